/*
 * lwIP architecture description for simplemsg's x86_64 kernel (freestanding, gcc or clang).
 * Types come from the compiler's own <stdint.h>/<stddef.h>; diagnostics and assertions go to the
 * kernel console through the hooks in sys_arch.c.
 */
#ifndef SMP_LWIP_ARCH_CC_H
#define SMP_LWIP_ARCH_CC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BYTE_ORDER LITTLE_ENDIAN

/* Format macros for lwIP's diagnostics (we have no <inttypes.h>). */
#define X8_F  "02x"
#define U16_F "u"
#define S16_F "d"
#define X16_F "x"
#define U32_F "u"
#define S32_F "d"
#define X32_F "x"
#define SZT_F "lu"

void lwip_port_diag(const char *message);
void lwip_port_assert(const char *message, const char *file, int line);
uint32_t lwip_port_rand(void);

/* Diagnostics take printf-style argument lists; we print the format string only. */
#define LWIP_PLATFORM_DIAG(x)   do { lwip_port_diag_fmt x; } while (0)
#define LWIP_PLATFORM_ASSERT(x) do { lwip_port_assert((x), __FILE__, __LINE__); } while (0)
#define LWIP_RAND()             (lwip_port_rand())

static inline void lwip_port_diag_fmt(const char *format, ...) { lwip_port_diag(format); }

#ifdef __cplusplus
}
#endif

#endif /* SMP_LWIP_ARCH_CC_H */
