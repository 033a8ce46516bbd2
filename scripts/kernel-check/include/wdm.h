/* Kernel check's wdm.h: mingw-w64's DDK wdm.h, then what the real WDK's wdm.h declares and
 * mingw-w64 lacks (ktmrm_wdm_supplement.h). Path set by scripts/kernel-check.sh. */
#include MINGW_DDK_WDM_H
#include "ktmrm_wdm_supplement.h"
