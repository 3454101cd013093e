/*
 * framing.h - RFC 9112 message framing of a request, checked strictly when
 * its headers are complete.  Loop thread only.
 */
#ifndef LLAMAD_FRAMING_H
#define LLAMAD_FRAMING_H

#include <stdint.h>

struct MHD_Connection;

/*
 * One Content-Length of digits only, or one Transfer-Encoding that is
 * exactly "chunked", never both; at most one Host.  A message framed any
 * other way could be read differently by a proxy in front of llamad
 * (request smuggling), so the caller answers 400 and closes.  Returns NULL
 * when the framing is sound, else what is wrong with it.  *declared gets
 * the Content-Length, or UINT64_MAX when there is none.
 */
const char *http_framing_check(struct MHD_Connection *conn, uint64_t *declared);

#endif
