/* Unit tests for server/strlist.c (comma-separated settings) and server/cors.c (allowed-origins). */
#include "test.h"

#include <microhttpd.h>

#include "base/err.h"
#include "../../server/cors.h"
#include "../../server/strlist.h"

TEST(items_are_trimmed_and_empty_ones_skipped)
{
    const char *p = " a ,, b c ,c,  ,";
    const char *item;
    size_t len;
    const char *want[] = { "a", "b c", "c" };
    for (size_t i = 0; i < 3; i++) {
        ASSERT(strlist_next(&p, &item, &len));
        ASSERT_EQ_INT(len, (long long)strlen(want[i]));
        ASSERT(memcmp(item, want[i], len) == 0);
    }
    ASSERT(!strlist_next(&p, &item, &len));
    ASSERT(!strlist_next(&p, &item, &len));     /* stays at the end */
    const char *none = NULL;
    ASSERT(!strlist_next(&none, &item, &len));
    const char *blank = " , ,";
    ASSERT(!strlist_next(&blank, &item, &len));
}

TEST(has_matches_whole_items_only)
{
    const char *list = "gpt-4o, my-model ,Llama";
    ASSERT(strlist_has(list, "gpt-4o", 6, 0));
    ASSERT(strlist_has(list, "my-model", 8, 0));
    ASSERT(strlist_has(list, "llama", 5, 1));
    /* rejected: case without nocase, prefixes, extensions, spaces, empty, NULL list */
    ASSERT(!strlist_has(list, "llama", 5, 0));
    ASSERT(!strlist_has(list, "gpt", 3, 0));
    ASSERT(!strlist_has(list, "gpt-4o-mini", 11, 0));
    ASSERT(!strlist_has(list, " my-model", 9, 0));
    ASSERT(!strlist_has(list, "gpt-4o, my-model", 16, 0));
    ASSERT(!strlist_has(list, "", 0, 0));
    ASSERT(!strlist_has(NULL, "a", 1, 0));
    ASSERT(!strlist_has("", "a", 1, 0));
}

TEST(first_item_fits_or_is_refused)
{
    char out[8];
    ASSERT_EQ_INT(strlist_first(" alias , other", out, sizeof out), 5);
    ASSERT_EQ_STR(out, "alias");
    ASSERT_EQ_INT(strlist_first("", out, sizeof out), 0);
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(strlist_first(NULL, out, sizeof out), 0);
    ASSERT_EQ_INT(strlist_first("1234567", out, sizeof out), 7);
    ASSERT_EQ_INT(strlist_first("12345678", out, sizeof out), ERR_TOOLONG);
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(strlist_first("a", out, 0), ERR_TOOLONG);
}

TEST(cors_allows_listed_origins_only)
{
    const char *list = "https://app.example.com, http://localhost:3000";
    const char *o = "https://app.example.com";
    ASSERT(cors_allow_origin(list, o) == o);    /* echoed, not copied */
    ASSERT_EQ_STR(cors_allow_origin(list, "HTTPS://APP.EXAMPLE.COM"), "HTTPS://APP.EXAMPLE.COM");
    ASSERT_EQ_STR(cors_allow_origin(list, "http://localhost:3000"), "http://localhost:3000");
    const char *bad[] = { "https://app.example.com.evil.net", "http://app.example.com",
                          "https://app.example.co", "http://localhost:3001", "http://localhost",
                          "null", "", "*" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(cors_allow_origin(list, bad[i]) == NULL, "%s allowed", bad[i]);
    ASSERT(cors_allow_origin(list, NULL) == NULL);
    ASSERT(cors_allow_origin("", o) == NULL);       /* off by default */
    ASSERT(cors_allow_origin(NULL, o) == NULL);
}

TEST(cors_star_allows_any_origin_as_star)
{
    ASSERT_EQ_STR(cors_allow_origin("*", "https://anything.example"), "*");
    ASSERT_EQ_STR(cors_allow_origin("https://a.example, *", "https://a.example"), "*");
    ASSERT(cors_allow_origin("*", NULL) == NULL);   /* not a browser: no headers */
    char huge[1024];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    ASSERT(cors_allow_origin("*", huge) == NULL);   /* past CORS_ORIGIN_MAX */
}

TEST(cors_headers_only_when_allowed)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    ASSERT(r != NULL);
    cors_add_headers(r, NULL, "POST, OPTIONS");     /* not allowed: nothing at all */
    ASSERT(MHD_get_response_header(r, "Access-Control-Allow-Origin") == NULL);
    ASSERT(MHD_get_response_header(r, "Access-Control-Allow-Methods") == NULL);
    ASSERT(MHD_get_response_header(r, "Vary") == NULL);
    cors_add_headers(r, "https://a.example", NULL); /* a plain answer: no preflight headers */
    ASSERT_EQ_STR(MHD_get_response_header(r, "Access-Control-Allow-Origin"), "https://a.example");
    ASSERT_EQ_STR(MHD_get_response_header(r, "Vary"), "Origin");
    ASSERT(MHD_get_response_header(r, "Access-Control-Max-Age") == NULL);
    MHD_destroy_response(r);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    cors_add_headers(r, "*", "GET, HEAD, OPTIONS");
    ASSERT_EQ_STR(MHD_get_response_header(r, "Access-Control-Allow-Origin"), "*");
    ASSERT(MHD_get_response_header(r, "Vary") == NULL);
    ASSERT_EQ_STR(MHD_get_response_header(r, "Access-Control-Allow-Methods"), "GET, HEAD, OPTIONS");
    ASSERT_EQ_STR(MHD_get_response_header(r, "Access-Control-Allow-Headers"),
                  "Authorization, Content-Type");
    ASSERT(MHD_get_response_header(r, "Access-Control-Allow-Credentials") == NULL);
    MHD_destroy_response(r);
}

TEST_LIST(T(items_are_trimmed_and_empty_ones_skipped), T(has_matches_whole_items_only),
          T(first_item_fits_or_is_refused), T(cors_allows_listed_origins_only),
          T(cors_star_allows_any_origin_as_star), T(cors_headers_only_when_allowed))
