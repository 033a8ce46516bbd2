/* LINK-TIME STAND-IN for WdmlibIoCreateDeviceSecure, for the Linux kernel check and the emulated
 * kernel only (never shipped). The real routine is static code in the WDK's wdmsec.lib: it
 * creates the device with IoCreateDevice, then applies the SDDL security descriptor (or the
 * administrator's override stored under the device class GUID). This stand-in creates the device
 * and ignores the SDDL and class GUID, so the PE it yields imports IoCreateDevice instead of the
 * Se/Rtl/Zw routines the real library pulls in.
 *
 * NTSTATUS WdmlibIoCreateDeviceSecure(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize,
 *   PUNICODE_STRING DeviceName, DEVICE_TYPE DeviceType, ULONG DeviceCharacteristics,
 *   BOOLEAN Exclusive, PCUNICODE_STRING DefaultSDDLString, LPCGUID DeviceClassGuid,
 *   PDEVICE_OBJECT *DeviceObject);
 * https://learn.microsoft.com/windows-hardware/drivers/ddi/wdmsec/nf-wdmsec-wdmlibiocreatedevicesecure
 *
 * NTSTATUS IoCreateDevice(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize,
 *   PUNICODE_STRING DeviceName, DEVICE_TYPE DeviceType, ULONG DeviceCharacteristics,
 *   BOOLEAN Exclusive, PDEVICE_OBJECT *DeviceObject);
 * https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iocreatedevice */
typedef long NTSTATUS;
typedef unsigned long ULONG;
typedef unsigned char BOOLEAN;

__declspec(dllimport) NTSTATUS IoCreateDevice(void *DriverObject, ULONG DeviceExtensionSize,
    void *DeviceName, ULONG DeviceType, ULONG DeviceCharacteristics, BOOLEAN Exclusive,
    void **DeviceObject);

NTSTATUS WdmlibIoCreateDeviceSecure(void *DriverObject, ULONG DeviceExtensionSize,
    void *DeviceName, ULONG DeviceType, ULONG DeviceCharacteristics, BOOLEAN Exclusive,
    const void *DefaultSDDLString, const void *DeviceClassGuid, void **DeviceObject)
{
    (void)DefaultSDDLString;
    (void)DeviceClassGuid;
    return IoCreateDevice(DriverObject, DeviceExtensionSize, DeviceName, DeviceType,
        DeviceCharacteristics, Exclusive, DeviceObject);
}
