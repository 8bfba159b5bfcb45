/* The one stdlib routine lwIP calls (netif.c: atoi); defined in lwip_libc.c. */
#ifndef SMP_LWIP_LIBC_STDLIB_H
#define SMP_LWIP_LIBC_STDLIB_H

#ifdef __cplusplus
extern "C" {
#endif

int atoi(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* SMP_LWIP_LIBC_STDLIB_H */
