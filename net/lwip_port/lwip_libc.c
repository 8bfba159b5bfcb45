/*
 * The C library routines lwIP needs in a freestanding kernel. Weak, so that the kernel's own
 * definitions (if it has them) take precedence at link time. Byte loops on purpose: the kernel is
 * built with -fno-tree-loop-distribute-patterns, so gcc does not turn them back into calls.
 */
#include <stddef.h>
#include <stdint.h>

#include "string.h"
#include "stdlib.h"

__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n)
{
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  while (n--) {
    *d++ = *s++;
  }
  return dst;
}

__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n)
{
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  if (d == s || n == 0) {
    return dst;
  }
  if (d < s) {
    while (n--) {
      *d++ = *s++;
    }
  } else {
    d += n;
    s += n;
    while (n--) {
      *--d = *--s;
    }
  }
  return dst;
}

__attribute__((weak)) void *memset(void *dst, int c, size_t n)
{
  unsigned char *d = (unsigned char *)dst;
  while (n--) {
    *d++ = (unsigned char)c;
  }
  return dst;
}

__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n)
{
  const unsigned char *x = (const unsigned char *)a;
  const unsigned char *y = (const unsigned char *)b;
  for (; n; n--, x++, y++) {
    if (*x != *y) {
      return (int)*x - (int)*y;
    }
  }
  return 0;
}

__attribute__((weak)) size_t strlen(const char *s)
{
  size_t n = 0;
  while (s[n]) {
    n++;
  }
  return n;
}

__attribute__((weak)) int strncmp(const char *a, const char *b, size_t n)
{
  for (; n; n--, a++, b++) {
    if (*a != *b || *a == '\0') {
      return (int)(unsigned char)*a - (int)(unsigned char)*b;
    }
  }
  return 0;
}

__attribute__((weak)) int atoi(const char *s)
{
  int sign = 1;
  int v = 0;
  if (*s == '-') {
    sign = -1;
    s++;
  }
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + (*s++ - '0');
  }
  return sign * v;
}
