/* ktmrm_example.c: a C application of ktmrm, through the APIs any Windows program has.
 *
 *   1. opens \\.\KtmRm (CreateFileW) and checks the protocol version (GET_VERSION);
 *   2. creates a KTM transaction (ktmw32 CreateTransaction);
 *   3. PUTs a key in it (DeviceIoControl with crates/proto/include/ktmrm.h's layouts);
 *   4. commits it (ktmw32 CommitTransaction): the key becomes visible to everyone;
 *   5. GETs the key outside any transaction and prints the committed value.
 *
 * Usage (elevated: the device admits SYSTEM and Administrators):
 *   ktmrm_example.exe [KEY [VALUE]]      defaults: example/greeting "hello from C"
 * Exit status 0 when the value read back is the value written, else 1.
 *
 * Build (MSVC):     cl /std:c11 /I crates\proto\include examples\c\ktmrm_example.c ktmw32.lib
 * Build (mingw-w64): x86_64-w64-mingw32-gcc -Wall -Wextra -Werror -I crates/proto/include \
 *                     examples/c/ktmrm_example.c -lktmw32 -o ktmrm_example.exe
 *
 * Every failure names the call and its exact NTSTATUS. DeviceIoControl reports a failure as a
 * Win32 error, which loses information (STATUS_INVALID_HANDLE and STATUS_OBJECT_TYPE_MISMATCH
 * are both error 6), so ktmrm_call() reads the status as the Rust client does
 * (usermode-test/src/transport/completion.rs): from the OVERLAPPED's Internal when the I/O
 * manager wrote it, else from the thread's last NTSTATUS (ntdll's RtlGetLastNtStatus), used only
 * when it maps to the Win32 error the call set. */

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <ktmw32.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktmrm.h"

typedef LONG(WINAPI *nt_status_fn)(void);
typedef ULONG(WINAPI *status_to_error_fn)(LONG);

/* The STATUS_* name of a status ktmrm returns, for messages. */
static const char *status_name(int32_t status)
{
#define KTMRM_NAME(n) \
    { KTMRM_STATUS_##n, "STATUS_" #n }
    static const struct {
        int32_t status;
        const char *name;
    } names[] = {
        KTMRM_NAME(SUCCESS),
        KTMRM_NAME(BUFFER_OVERFLOW),
        KTMRM_NAME(UNSUCCESSFUL),
        KTMRM_NAME(INVALID_HANDLE),
        KTMRM_NAME(INVALID_PARAMETER),
        KTMRM_NAME(INVALID_DEVICE_REQUEST),
        KTMRM_NAME(ACCESS_DENIED),
        KTMRM_NAME(BUFFER_TOO_SMALL),
        KTMRM_NAME(OBJECT_TYPE_MISMATCH),
        KTMRM_NAME(OBJECT_NAME_NOT_FOUND),
        KTMRM_NAME(QUOTA_EXCEEDED),
        KTMRM_NAME(REVISION_MISMATCH),
        KTMRM_NAME(INSUFFICIENT_RESOURCES),
        KTMRM_NAME(INVALID_BUFFER_SIZE),
        KTMRM_NAME(TRANSACTION_ABORTED),
        KTMRM_NAME(DEVICE_NOT_READY),
        KTMRM_NAME(TRANSACTIONAL_CONFLICT),
        KTMRM_NAME(INVALID_TRANSACTION),
        KTMRM_NAME(TRANSACTION_NOT_ACTIVE),
        KTMRM_NAME(RM_NOT_ACTIVE),
        KTMRM_NAME(TRANSACTION_REQUIRED_PROMOTION),
        KTMRM_NAME(TRANSACTION_OBJECT_EXPIRED),
    };
#undef KTMRM_NAME
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].status == status) {
            return names[i].name;
        }
    }
    return "an NTSTATUS ktmrm does not name";
}

/* The NTSTATUS of the Win32 call (DeviceIoControl, CreateTransaction, CommitTransaction) that
 * just failed with Win32 error `error`. */
static int32_t failed_call_status(DWORD error)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    nt_status_fn last_status = NULL;
    status_to_error_fn to_error = NULL;
    if (ntdll != NULL) {
        /* Function pointers from GetProcAddress: the documented way to call an export. */
        last_status = (nt_status_fn)(void (*)(void))GetProcAddress(ntdll, "RtlGetLastNtStatus");
        to_error = (status_to_error_fn)(void (*)(void))GetProcAddress(ntdll, "RtlNtStatusToDosError");
    }
    if (last_status != NULL && to_error != NULL) {
        int32_t status = (int32_t)last_status();
        if (status < 0 && to_error(status) == error) {
            return status;
        }
    }
    /* No NTSTATUS came with the error: NTSTATUS_FROM_WIN32. */
    return error == 0 ? KTMRM_STATUS_UNSUCCESSFUL : (int32_t)(0xC0070000u | (error & 0xFFFFu));
}

/* One request: returns its NTSTATUS; *written is the bytes the driver wrote to `out`. */
static int32_t ktmrm_call(HANDLE device, DWORD code, const void *in, DWORD in_len, void *out,
                          DWORD out_len, DWORD *written)
{
    OVERLAPPED overlapped;
    DWORD bytes = 0;
    int32_t status;
    memset(&overlapped, 0, sizeof overlapped);
    /* The I/O manager replaces this with the request's status when it writes the status block;
     * it does not for a request that fails synchronously with an error. */
    overlapped.Internal = (ULONG_PTR)(uint32_t)KTMRM_STATUS_PENDING;
    if (DeviceIoControl(device, code, (void *)in, in_len, out, out_len, &bytes, &overlapped)) {
        status = (int32_t)(uint32_t)overlapped.Internal;
        if (status == KTMRM_STATUS_PENDING || status < 0) {
            status = KTMRM_STATUS_SUCCESS;
        }
    } else {
        status = failed_call_status(GetLastError());
    }
    if ((uint32_t)overlapped.Internal != (uint32_t)KTMRM_STATUS_PENDING) {
        bytes = (DWORD)overlapped.InternalHigh;
    }
    /* An error status copies nothing back (METHOD_BUFFERED). */
    *written = ((uint32_t)status >> 30) == 3 ? 0 : (bytes < out_len ? bytes : out_len);
    return status;
}

static int report(const char *what, int32_t status)
{
    fprintf(stderr, "ktmrm_example: %s failed: %s (NTSTATUS 0x%08lX)\n", what,
            status_name(status), (unsigned long)(uint32_t)status);
    return 1;
}

static int report_win32(const char *what, DWORD error)
{
    int32_t status = failed_call_status(error);
    fprintf(stderr, "ktmrm_example: %s failed: Win32 error %lu, %s (NTSTATUS 0x%08lX)\n", what,
            (unsigned long)error, status_name(status), (unsigned long)(uint32_t)status);
    return 1;
}

/* GET_VERSION: the driver must speak this header's protocol. */
static int check_version(HANDLE device)
{
    KTMRM_VERSION_INFO info;
    DWORD written = 0;
    int32_t status = ktmrm_call(device, IOCTL_KTMRM_GET_VERSION, NULL, 0, &info, sizeof info,
                                &written);
    if (status != KTMRM_STATUS_SUCCESS) {
        return report("GET_VERSION", status);
    }
    if (written < sizeof info || info.ProtocolVersion != KTMRM_PROTOCOL_VERSION) {
        fprintf(stderr,
                "ktmrm_example: the driver speaks protocol %u (answer of %lu bytes); this "
                "program was built for protocol %u\n",
                (unsigned)info.ProtocolVersion, (unsigned long)written,
                (unsigned)KTMRM_PROTOCOL_VERSION);
        return 1;
    }
    return 0;
}

/* PUT key = value in transaction `tx`. */
static int put(HANDLE device, HANDLE tx, const char *key, const char *value)
{
    size_t key_len = strlen(key), value_len = strlen(value);
    size_t body_len = sizeof(KTMRM_PUT_BODY) + key_len + value_len;
    KTMRM_REQUEST_HEADER header;
    KTMRM_PUT_BODY body;
    unsigned char *request;
    DWORD written = 0;
    int32_t status;

    if (key_len == 0 || key_len > KTMRM_MAX_KEY_LEN || value_len > KTMRM_MAX_VALUE_LEN) {
        fprintf(stderr, "ktmrm_example: keys are 1-%u bytes, values 0-%u bytes\n",
                (unsigned)KTMRM_MAX_KEY_LEN, (unsigned)KTMRM_MAX_VALUE_LEN);
        return 1;
    }
    request = malloc(sizeof header + body_len);
    if (request == NULL) {
        fprintf(stderr, "ktmrm_example: out of memory\n");
        return 1;
    }
    header.Version = KTMRM_PROTOCOL_VERSION;
    header.Flags = 0;
    header.BodyLength = (uint32_t)body_len;
    /* The handle's value in this process, sign-extended as the kernel reads a HANDLE. */
    header.Transaction = (uint64_t)(int64_t)(intptr_t)tx;
    body.KeyLength = (uint16_t)key_len;
    body.Reserved = 0;
    body.ValueLength = (uint32_t)value_len;
    memcpy(request, &header, sizeof header);
    memcpy(request + sizeof header, &body, sizeof body);
    memcpy(request + sizeof header + sizeof body, key, key_len);
    memcpy(request + sizeof header + sizeof body + key_len, value, value_len);

    status = ktmrm_call(device, IOCTL_KTMRM_PUT, request, (DWORD)(sizeof header + body_len), NULL,
                        0, &written);
    free(request);
    return status == KTMRM_STATUS_SUCCESS ? 0 : report("PUT", status);
}

/* GET key outside any transaction (committed data); prints it and compares with `expected`. */
static int get(HANDLE device, const char *key, const char *expected)
{
    size_t key_len = strlen(key);
    unsigned char request[sizeof(KTMRM_REQUEST_HEADER) + sizeof(KTMRM_KEY_BODY) +
                          KTMRM_MAX_KEY_LEN];
    KTMRM_REQUEST_HEADER header;
    KTMRM_KEY_BODY body;
    KTMRM_GET_ANSWER answer;
    DWORD out_len = (DWORD)(sizeof answer + KTMRM_MAX_VALUE_LEN);
    unsigned char *out = malloc(out_len);
    DWORD written = 0;
    int32_t status;
    int rc;

    if (out == NULL) {
        fprintf(stderr, "ktmrm_example: out of memory\n");
        return 1;
    }
    if (key_len == 0 || key_len > KTMRM_MAX_KEY_LEN) {
        fprintf(stderr, "ktmrm_example: keys are 1-%u bytes\n", (unsigned)KTMRM_MAX_KEY_LEN);
        free(out);
        return 1;
    }
    header.Version = KTMRM_PROTOCOL_VERSION;
    header.Flags = 0;
    header.BodyLength = (uint32_t)(sizeof body + key_len);
    header.Transaction = 0; /* no transaction: committed data */
    body.KeyLength = (uint16_t)key_len;
    body.Reserved = 0;
    memcpy(request, &header, sizeof header);
    memcpy(request + sizeof header, &body, sizeof body);
    memcpy(request + sizeof header + sizeof body, key, key_len);

    status = ktmrm_call(device, IOCTL_KTMRM_GET, request,
                        (DWORD)(sizeof header + sizeof body + key_len), out, out_len, &written);
    if (status != KTMRM_STATUS_SUCCESS) {
        free(out);
        return report("GET", status);
    }
    memcpy(&answer, out, sizeof answer);
    if (written < sizeof answer || answer.ValueLength > written - sizeof answer) {
        fprintf(stderr, "ktmrm_example: GET answered %lu bytes for a %lu-byte value\n",
                (unsigned long)written, (unsigned long)answer.ValueLength);
        free(out);
        return 1;
    }
    printf("%s = %.*s\n", key, (int)answer.ValueLength, (const char *)(out + sizeof answer));
    rc = answer.ValueLength == strlen(expected) &&
                 memcmp(out + sizeof answer, expected, answer.ValueLength) == 0
             ? 0
             : 1;
    if (rc != 0) {
        fprintf(stderr, "ktmrm_example: GET read back another value than the one committed\n");
    }
    free(out);
    return rc;
}

int main(int argc, char **argv)
{
    const char *key = argc > 1 ? argv[1] : "example/greeting";
    const char *value = argc > 2 ? argv[2] : "hello from C";
    WCHAR description[] = L"ktmrm C example";
    HANDLE device, tx;
    int rc;

    device = CreateFileW(KTMRM_DEVICE_PATH, GENERIC_READ | GENERIC_WRITE,
                         FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                         FILE_ATTRIBUTE_NORMAL, NULL);
    if (device == INVALID_HANDLE_VALUE) {
        DWORD error = GetLastError();
        if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND) {
            fprintf(stderr, "ktmrm_example: \\\\.\\KtmRm does not exist: is the driver installed "
                            "and started (sc.exe query KtmRm)?\n");
            return 1;
        }
        if (error == ERROR_ACCESS_DENIED) {
            fprintf(stderr, "ktmrm_example: \\\\.\\KtmRm admits SYSTEM and Administrators: run "
                            "from an elevated prompt\n");
            return 1;
        }
        return report_win32("opening \\\\.\\KtmRm", error);
    }
    if (check_version(device) != 0) {
        CloseHandle(device);
        return 1;
    }

    tx = CreateTransaction(NULL, NULL, 0, 0, 0, 0, description);
    if (tx == INVALID_HANDLE_VALUE) {
        rc = report_win32("CreateTransaction", GetLastError());
        CloseHandle(device);
        return rc;
    }
    rc = put(device, tx, key, value);
    if (rc == 0) {
        if (CommitTransaction(tx)) {
            printf("committed %s in a KTM transaction\n", key);
        } else {
            rc = report_win32("CommitTransaction", GetLastError());
        }
    } else {
        /* Nothing of the transaction becomes visible. */
        RollbackTransaction(tx);
    }
    CloseHandle(tx);
    if (rc == 0) {
        rc = get(device, key, value);
    }
    CloseHandle(device);
    return rc;
}
