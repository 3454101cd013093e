#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *err_str(int code)
{
    switch (code) {
    case 0: return "success";
#define ERR_CASE(name, val, desc) case val: return desc;
    ERR_MAP(ERR_CASE)
#undef ERR_CASE
    default: return "unknown error";
    }
}

int err_set(char *buf, size_t len, int code, const char *fmt, ...)
{
    if (buf != NULL && len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *err_shown(char *buf, size_t cap, const char *p, size_t len)
{
    if (cap == 0)
        return buf;
    if (p == NULL) {
        snprintf(buf, cap, "(null)");
        return buf;
    }
    size_t n = 0, max = len > 64 ? 64 : len;
    for (size_t i = 0; i < max && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        buf[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > max && n + 4 <= cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

const char *err_show(char *buf, size_t cap, const char *s)
{
    return err_shown(buf, cap, s, s != NULL ? strlen(s) : 0);
}
