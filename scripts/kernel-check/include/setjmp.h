/* ktmrm kernel check: an MSVC-style setjmp.h in place of mingw-w64's. clang's intrin.h (MSVC mode)
 * includes <setjmp.h> and declares `int __cdecl _setjmp(jmp_buf)`, which is what the MSVC/WDK
 * header says; mingw-w64's declares `_setjmp(jmp_buf, void *)` and the two conflict. */
#ifndef _INC_SETJMP
#define _INC_SETJMP
typedef struct __declspec(align(16)) _SETJMP_FLOAT128 { unsigned __int64 Part[2]; } SETJMP_FLOAT128;
#define _JBLEN 16
typedef SETJMP_FLOAT128 _JBTYPE;
typedef _JBTYPE jmp_buf[_JBLEN];
int __cdecl _setjmp(jmp_buf _Buf);
#define setjmp _setjmp
__declspec(noreturn) void __cdecl longjmp(jmp_buf _Buf, int _Value);
#endif
