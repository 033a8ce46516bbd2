/* ktmrm.h: the ktmrm IOCTL ABI for C and C++ callers of DeviceIoControl.
 * Generated from crates/proto by its c_header test; run
 * `KTMRM_BLESS=1 cargo test -p ktmrm-proto --test c_header` to rewrite. Do not edit.
 * All fields are little-endian and unaligned (packed); variable parts follow each
 * fixed body in the order its comment gives. See crates/proto/src/request.rs. */
#ifndef KTMRM_H
#define KTMRM_H

#include <stdint.h>

#define KTMRM_DEVICE_PATH L"\\\\.\\KtmRm"
#define KTMRM_PROTOCOL_VERSION 1
#define KTMRM_MAX_KEY_LEN 255
#define KTMRM_MAX_VALUE_LEN 65536
#define KTMRM_MAX_DESCRIPTION_CHARS 64
#define KTMRM_LIST_MIN_OUTPUT 265
#define KTMRM_LIST_MORE 0x1u
/* KTMRM_REQUEST_HEADER.Flags bits 0-1: the transaction's isolation level. */
#define KTMRM_ISOLATION_MASK 0x3u
#define KTMRM_ISOLATION_UNSTATED 0u
#define KTMRM_ISOLATION_READ_COMMITTED 1u
#define KTMRM_ISOLATION_SERIALIZABLE 2u

/* FILE_ANY_ACCESS */
#define IOCTL_KTMRM_GET_VERSION 0x00222000u
/* FILE_WRITE_DATA */
#define IOCTL_KTMRM_BEGIN 0x0022A004u
/* FILE_WRITE_DATA */
#define IOCTL_KTMRM_PUT 0x0022A008u
/* FILE_READ_DATA */
#define IOCTL_KTMRM_GET 0x0022600Cu
/* FILE_WRITE_DATA */
#define IOCTL_KTMRM_DELETE 0x0022A010u
/* FILE_READ_DATA */
#define IOCTL_KTMRM_LIST 0x00226014u
/* FILE_READ_DATA */
#define IOCTL_KTMRM_STATS 0x00226018u

/* NTSTATUS values ktmrm returns (as in ntstatus.h). */
#define KTMRM_STATUS_SUCCESS ((int32_t)0x00000000u)
#define KTMRM_STATUS_TIMEOUT ((int32_t)0x00000102u)
#define KTMRM_STATUS_PENDING ((int32_t)0x00000103u)
#define KTMRM_STATUS_RESOURCEMANAGER_READ_ONLY ((int32_t)0x00000202u)
#define KTMRM_STATUS_BUFFER_OVERFLOW ((int32_t)0x80000005u)
#define KTMRM_STATUS_UNSUCCESSFUL ((int32_t)0xC0000001u)
#define KTMRM_STATUS_INVALID_HANDLE ((int32_t)0xC0000008u)
#define KTMRM_STATUS_INVALID_PARAMETER ((int32_t)0xC000000Du)
#define KTMRM_STATUS_INVALID_DEVICE_REQUEST ((int32_t)0xC0000010u)
#define KTMRM_STATUS_ACCESS_DENIED ((int32_t)0xC0000022u)
#define KTMRM_STATUS_BUFFER_TOO_SMALL ((int32_t)0xC0000023u)
#define KTMRM_STATUS_OBJECT_TYPE_MISMATCH ((int32_t)0xC0000024u)
#define KTMRM_STATUS_INVALID_PARAMETER_MIX ((int32_t)0xC0000030u)
#define KTMRM_STATUS_OBJECT_NAME_NOT_FOUND ((int32_t)0xC0000034u)
#define KTMRM_STATUS_QUOTA_EXCEEDED ((int32_t)0xC0000044u)
#define KTMRM_STATUS_REVISION_MISMATCH ((int32_t)0xC0000059u)
#define KTMRM_STATUS_INSUFFICIENT_RESOURCES ((int32_t)0xC000009Au)
#define KTMRM_STATUS_INVALID_BUFFER_SIZE ((int32_t)0xC0000206u)
#define KTMRM_STATUS_TRANSACTION_ABORTED ((int32_t)0xC000020Fu)
#define KTMRM_STATUS_DEVICE_NOT_READY ((int32_t)0xC00000A3u)
#define KTMRM_STATUS_TRANSACTIONAL_CONFLICT ((int32_t)0xC0190001u)
#define KTMRM_STATUS_INVALID_TRANSACTION ((int32_t)0xC0190002u)
#define KTMRM_STATUS_TRANSACTION_NOT_ACTIVE ((int32_t)0xC0190003u)
#define KTMRM_STATUS_RM_NOT_ACTIVE ((int32_t)0xC0190005u)
#define KTMRM_STATUS_TRANSACTION_REQUEST_NOT_VALID ((int32_t)0xC0190013u)
#define KTMRM_STATUS_TRANSACTION_NOT_REQUESTED ((int32_t)0xC0190014u)
#define KTMRM_STATUS_TRANSACTION_ALREADY_ABORTED ((int32_t)0xC0190015u)
#define KTMRM_STATUS_TRANSACTION_ALREADY_COMMITTED ((int32_t)0xC0190016u)
#define KTMRM_STATUS_RM_DISCONNECTED ((int32_t)0xC0190032u)
#define KTMRM_STATUS_TM_VOLATILE ((int32_t)0xC019003Bu)
#define KTMRM_STATUS_TRANSACTION_REQUIRED_PROMOTION ((int32_t)0xC0190043u)
#define KTMRM_STATUS_TRANSACTION_OBJECT_EXPIRED ((int32_t)0xC0190055u)
#define KTMRM_STATUS_TRANSACTION_NOT_ENLISTED ((int32_t)0xC0190061u)

#pragma pack(push, 1)

/* every request but GET_VERSION starts with this */
typedef struct KTMRM_REQUEST_HEADER {
    uint16_t Version;
    uint16_t Flags;
    uint32_t BodyLength;
    uint64_t Transaction;
} KTMRM_REQUEST_HEADER;

/* then DescriptionChars UTF-16LE units */
typedef struct KTMRM_BEGIN_BODY {
    uint32_t TimeoutMs;
    uint16_t DescriptionChars;
    uint16_t Reserved;
} KTMRM_BEGIN_BODY;

/* then KeyLength key bytes, then ValueLength value bytes */
typedef struct KTMRM_PUT_BODY {
    uint16_t KeyLength;
    uint16_t Reserved;
    uint32_t ValueLength;
} KTMRM_PUT_BODY;

/* GET and DELETE; then KeyLength key bytes */
typedef struct KTMRM_KEY_BODY {
    uint16_t KeyLength;
    uint16_t Reserved;
} KTMRM_KEY_BODY;

/* then the prefix, then the cursor */
typedef struct KTMRM_LIST_BODY {
    uint16_t PrefixLength;
    uint16_t CursorLength;
    uint32_t MaxKeys;
} KTMRM_LIST_BODY;

/* the GET_VERSION answer */
typedef struct KTMRM_VERSION_INFO {
    uint16_t ProtocolVersion;
    uint16_t Reserved;
    uint32_t Size;
    uint32_t MaxKeyLength;
    uint32_t MaxValueLength;
    uint32_t MaxLiveTransactions;
    uint32_t MaxWriteSet;
    uint64_t MaxKeys;
    uint64_t MaxBytes;
    uint32_t MaxDescriptionChars;
    uint32_t Reserved2;
} KTMRM_VERSION_INFO;

/* the BEGIN answer: a handle valid in the caller's process */
typedef struct KTMRM_BEGIN_ANSWER {
    uint64_t Transaction;
} KTMRM_BEGIN_ANSWER;

/* then ValueLength value bytes */
typedef struct KTMRM_GET_ANSWER {
    uint32_t ValueLength;
    uint32_t Reserved;
} KTMRM_GET_ANSWER;

/* then Count entries: uint16_t length, key bytes */
typedef struct KTMRM_LIST_ANSWER {
    uint32_t Count;
    uint32_t Flags;
} KTMRM_LIST_ANSWER;

/* the STATS answer */
typedef struct KTMRM_STATS {
    uint32_t Size;
    uint32_t FieldCount;
    uint64_t Commits;
    uint64_t Rollbacks;
    uint64_t Conflicts;
    uint64_t LiveTransactions;
    uint64_t Keys;
    uint64_t Bytes;
    uint64_t Prepared;
    uint64_t Vetoes;
    uint64_t ReadOnly;
    uint64_t SinglePhaseCommits;
    uint64_t NonTransactedWrites;
    uint64_t QuotaRejections;
    uint64_t ProtocolErrors;
    uint64_t Enlistments;
} KTMRM_STATS;
#pragma pack(pop)

#ifdef __cplusplus
#define KTMRM_STATIC_ASSERT static_assert
#else
#define KTMRM_STATIC_ASSERT _Static_assert
#endif
KTMRM_STATIC_ASSERT(sizeof(KTMRM_REQUEST_HEADER) == 16, "KTMRM_REQUEST_HEADER layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_BEGIN_BODY) == 8, "KTMRM_BEGIN_BODY layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_PUT_BODY) == 8, "KTMRM_PUT_BODY layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_KEY_BODY) == 4, "KTMRM_KEY_BODY layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_LIST_BODY) == 8, "KTMRM_LIST_BODY layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_VERSION_INFO) == 48, "KTMRM_VERSION_INFO layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_BEGIN_ANSWER) == 8, "KTMRM_BEGIN_ANSWER layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_GET_ANSWER) == 8, "KTMRM_GET_ANSWER layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_LIST_ANSWER) == 8, "KTMRM_LIST_ANSWER layout");
KTMRM_STATIC_ASSERT(sizeof(KTMRM_STATS) == 120, "KTMRM_STATS layout");

#endif /* KTMRM_H */
