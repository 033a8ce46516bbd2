/* LINK-TIME STAND-IN for __chkstk, for the Linux kernel check only (never shipped): the real one
 * comes with the WDK's kernel libraries. MSVC x64 contract: RAX = frame size in bytes; touches
 * each page below RSP in order so the guard page is hit first; preserves every register but
 * R10, R11 and the flags. Same algorithm as compiler-rt's x86_64 chkstk. A ktmrm frame that needs
 * it fails the kernel check anyway (no frame may exceed 4 KiB); it exists so the link finishes and
 * the inspection can name that frame. */
        .text
        .globl  __chkstk
        .p2align 4
__chkstk:
        push    %rcx
        push    %rax
        cmp     $0x1000, %rax
        lea     24(%rsp), %rcx
        jb      1f
2:
        sub     $0x1000, %rcx
        test    %rcx, (%rcx)
        sub     $0x1000, %rax
        cmp     $0x1000, %rax
        ja      2b
1:
        sub     %rax, %rcx
        test    %rcx, (%rcx)
        pop     %rax
        pop     %rcx
        ret
