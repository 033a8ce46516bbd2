/* ktmrm kernel check: declarations that the real WDK (10.0.26100) has in wdm.h / ktmtypes.h and that
 * mingw-w64 10.0.0's DDK headers lack. Each is copied from its Microsoft Learn DDI page
 * (learn.microsoft.com/windows-hardware/drivers/ddi/wdm/...); SAL annotations dropped. Only what
 * ktmrm and the windows-drivers-rs crates (wdk-sys, wdk-alloc) use is here. */
#ifndef KTMRM_WDM_SUPPLEMENT_H
#define KTMRM_WDM_SUPPLEMENT_H

/* ---- pool (wdm.h): used by wdk-sys' constants.rs (POOL_FLAG_*) and wdk-alloc ------------------ */

/* typedef ULONG64 POOL_FLAGS;  (wdm.h, Windows 10 2004+) */
typedef ULONG64 POOL_FLAGS;

/* winnt.h: #define DECLSPEC_RESTRICT __declspec(restrict) (absent from mingw-w64) */
#ifndef DECLSPEC_RESTRICT
#define DECLSPEC_RESTRICT __declspec(restrict)
#endif

/* nf-wdm-exallocatepool2:
 * DECLSPEC_RESTRICT PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag); */
NTKERNELAPI DECLSPEC_RESTRICT PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);

/* ---- KTM object types (wdm.h) ---------------------------------------------------------------- */

typedef struct _KTRANSACTION KTRANSACTION, *PKTRANSACTION, *RESTRICTED_POINTER PRKTRANSACTION;
typedef struct _KENLISTMENT KENLISTMENT, *PKENLISTMENT, *RESTRICTED_POINTER PRKENLISTMENT;
typedef struct _KRESOURCEMANAGER KRESOURCEMANAGER, *PKRESOURCEMANAGER,
    *RESTRICTED_POINTER PRKRESOURCEMANAGER;
typedef struct _KTM KTM, *PKTM, *RESTRICTED_POINTER PRKTM;

/* ktmtypes.h: typedef GUID UOW, *PUOW; (mingw-w64's ktmtypes.h has only user-mode parts) */
typedef GUID UOW, *PUOW;

/* nc-wdm-ptm_rm_notification:
 * NTSTATUS PtmRmNotification(PKENLISTMENT EnlistmentObject, PVOID RMContext,
 *   PVOID TransactionContext, ULONG TransactionNotification, PLARGE_INTEGER TmVirtualClock,
 *   ULONG ArgumentLength, PVOID Argument) */
typedef NTSTATUS (NTAPI *PTM_RM_NOTIFICATION)(PKENLISTMENT EnlistmentObject, PVOID RMContext,
    PVOID TransactionContext, ULONG TransactionNotification, PLARGE_INTEGER TmVirtualClock,
    ULONG ArgumentLength, PVOID Argument);

/* ---- KTM kernel routines (wdm.h, "Tm*" DDIs), NTKERNELAPI NTSTATUS NTAPI ----------------------- */

/* nf-wdm-tmenablecallbacks */
NTKERNELAPI NTSTATUS NTAPI TmEnableCallbacks(PKRESOURCEMANAGER ResourceManager,
    PTM_RM_NOTIFICATION CallbackRoutine, PVOID RMKey);

/* nf-wdm-tmcreateenlistment */
NTKERNELAPI NTSTATUS NTAPI TmCreateEnlistment(PHANDLE EnlistmentHandle,
    KPROCESSOR_MODE PreviousMode, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
    PRKRESOURCEMANAGER ResourceManager, PKTRANSACTION Transaction, ULONG CreateOptions,
    NOTIFICATION_MASK NotificationMask, PVOID EnlistmentKey);

/* nf-wdm-tmprepreparecomplete, -tmpreparecomplete, -tmcommitcomplete, -tmrollbackcomplete,
 * -tmreadonlyenlistment, -tmsinglephasereject, -tmrollbackenlistment:
 * NTSTATUS X(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock) */
NTKERNELAPI NTSTATUS NTAPI TmPrePrepareComplete(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmPrepareComplete(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmCommitComplete(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmRollbackComplete(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmReadOnlyEnlistment(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmSinglePhaseReject(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);
NTKERNELAPI NTSTATUS NTAPI TmRollbackEnlistment(PKENLISTMENT Enlistment, PLARGE_INTEGER TmVirtualClock);

/* nf-wdm-tmrecoverenlistment: NTSTATUS TmRecoverEnlistment(PKENLISTMENT Enlistment,
 * PVOID EnlistmentKey) */
NTKERNELAPI NTSTATUS NTAPI TmRecoverEnlistment(PKENLISTMENT Enlistment, PVOID EnlistmentKey);

/* nf-wdm-tmgettransactionid: VOID TmGetTransactionId(PKTRANSACTION Transaction,
 * PUOW TransactionId) */
NTKERNELAPI VOID NTAPI TmGetTransactionId(PKTRANSACTION Transaction, PUOW TransactionId);

/* nf-wdm-tmistransactionactive: BOOLEAN TmIsTransactionActive(PKTRANSACTION Transaction) */
NTKERNELAPI BOOLEAN NTAPI TmIsTransactionActive(PKTRANSACTION Transaction);

#endif /* KTMRM_WDM_SUPPLEMENT_H */
