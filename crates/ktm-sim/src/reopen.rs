//! A durable RM's object: created once, rebuilt from the log by TM recovery after a crash, and
//! then opened by the RM rather than created again. "Recovery Processing"
//! (<https://learn.microsoft.com/windows/win32/ktm/recovery-processing>): "Call the
//! OpenResourceManager function to re-open its resource manager handle using its unique,
//! persistent name ... If no enlistments exist to be recovered, the call to OpenResourceManager
//! can fail. Call CreateResourceManager to re-create the RM object."

use ktmrm_proto::NtStatus;

use crate::durable::{DurableRm, RmRecovery, status};
use crate::ids::{RmGuid, RmId};
use crate::ktm::Ktm;
use crate::model::{ResourceManager, RmCallback, State};

/// What the TM knows of a durable RM's object, by GUID.
enum RmObject {
    /// A volatile TM: no durable RMs.
    VolatileTm,
    /// A durable TM not recovered yet.
    Offline,
    /// Registered (created or opened) since the last crash.
    Registered(RmId),
    /// Rebuilt by TM recovery, not opened yet.
    Rebuilt,
    /// None.
    Unknown,
}

impl State {
    fn rm_object(&self, guid: RmGuid) -> RmObject {
        let Some(d) = self.durable.as_ref() else {
            return RmObject::VolatileTm;
        };
        if let Some((id, _)) = d.rms.iter().find(|(_, r)| r.guid == guid) {
            RmObject::Registered(*id)
        } else if d.reconstructed.contains(&guid) {
            RmObject::Rebuilt
        } else if !d.online {
            RmObject::Offline
        } else {
            RmObject::Unknown
        }
    }

    /// A new registration of the durable RM `guid` with its callback (`TmEnableCallbacks`).
    pub(crate) fn register_durable_rm(&mut self, guid: RmGuid, callback: RmCallback) -> RmId {
        let id = RmId(self.next_rm);
        self.next_rm += 1;
        self.rms.insert(id, ResourceManager { callback });
        if let Some(d) = self.durable.as_mut() {
            d.reconstructed.remove(&guid);
            d.rms.insert(
                id,
                DurableRm {
                    guid,
                    recovery: RmRecovery::NotStarted,
                    last_recover: 0,
                },
            );
        }
        id
    }

    /// TM recovery found an enlistment of the durable RM `guid` in the log: its RM object
    /// exists again, unopened, unless an RM already registered with that GUID.
    pub(crate) fn reconstruct_rm(&mut self, guid: RmGuid) {
        if let Some(d) = self.durable.as_mut()
            && !d.rms.values().any(|r| r.guid == guid)
        {
            d.reconstructed.insert(guid);
        }
    }
}

impl Ktm {
    /// Registers a durable RM (`ZwCreateResourceManager` without `RESOURCE_MANAGER_VOLATILE` +
    /// `TmEnableCallbacks`, docs/ktm.md §2, §7 step 4). After a crash an RM whose enlistments KTM
    /// logged must open the RM object TM recovery rebuilt instead ([`Ktm::open_resource_manager`])
    /// and then call [`Ktm::recover_resource_manager`]; it cannot enlist before (see
    /// [`Ktm::enlist`]). Errors: a volatile TM → `STATUS_TM_VOLATILE` ("volatile TM (recovery, or
    /// a non-volatile RM)", §5); the GUID registered, or rebuilt by TM recovery →
    /// `STATUS_OBJECT_NAME_COLLISION` (see [`status::OBJECT_NAME_COLLISION`]).
    pub fn create_durable_resource_manager(
        &self,
        guid: RmGuid,
        callback: RmCallback,
    ) -> Result<RmId, NtStatus> {
        let mut st = self.lock();
        match st.rm_object(guid) {
            RmObject::VolatileTm => Err(NtStatus::TM_VOLATILE),
            RmObject::Registered(_) | RmObject::Rebuilt => Err(status::OBJECT_NAME_COLLISION),
            RmObject::Offline | RmObject::Unknown => Ok(st.register_durable_rm(guid, callback)),
        }
    }

    /// `ZwOpenResourceManager(guid)` + `TmEnableCallbacks`: opens the RM object TM recovery
    /// rebuilt for `guid` (it has logged enlistments to recover); the RM then calls
    /// [`Ktm::recover_resource_manager`]. An RM already registered with `guid` is opened again
    /// (its callback stays the one it registered: one per RM). Errors, as the routine's page
    /// lists them
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwopenresourcemanager>):
    /// the TM not recovered → `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`; no such RM (nothing to
    /// recover, or a volatile TM) → `STATUS_RESOURCEMANAGER_NOT_FOUND`, and the RM creates
    /// itself with [`Ktm::create_durable_resource_manager`].
    pub fn open_resource_manager(
        &self,
        guid: RmGuid,
        callback: RmCallback,
    ) -> Result<RmId, NtStatus> {
        let mut st = self.lock();
        match st.rm_object(guid) {
            RmObject::Offline => Err(status::TRANSACTIONMANAGER_NOT_ONLINE),
            RmObject::Registered(id) => Ok(id),
            RmObject::Rebuilt => Ok(st.register_durable_rm(guid, callback)),
            RmObject::VolatileTm | RmObject::Unknown => Err(status::RESOURCEMANAGER_NOT_FOUND),
        }
    }
}
