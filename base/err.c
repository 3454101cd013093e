#include "err.h"

#include <stdarg.h>
#include <stdio.h>

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
