#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "shoal/error.h"

Test(error, names_round_trip_for_shoal_and_libuv_codes)
{
    int codes[] = {SHOAL_ENOAPP, SHOAL_ETOOBIG, SHOAL_EBADJSON,
                   UV_ECONNREFUSED, UV_EPIPE};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *name = shoal_err_name(codes[i]);
        cr_assert_eq(shoal_err_from_name(name, strlen(name)), codes[i], "%s",
                     name);
    }
}

Test(error, unknown_codes_and_names_have_safe_answers)
{
    cr_assert_str_eq(shoal_strerror(-123456), "unknown error");
    cr_assert_str_eq(shoal_err_name(-123456), "EUNKNOWN");
    cr_assert_eq(shoal_err_from_name("EMYAPPERROR", 11), SHOAL_EREMOTE);
    cr_assert_str_eq(shoal_strerror(SHOAL_ENOAPP), "no such application");
    cr_assert_str_eq(shoal_strerror(UV_EPIPE), "broken pipe");
}
