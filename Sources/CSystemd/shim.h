#ifndef SSE_HUB_CSYSTEMD_SHIM_H
#define SSE_HUB_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
