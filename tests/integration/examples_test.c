/* The examples print what the README says they print. */
#include <criterion/criterion.h>

#include "integration/harness.h"

#define T_TIMEOUT 60

TestSuite(examples, .init = h_init, .fini = h_fini);

/* Runs build/examples/NAME and checks its exit status and whole output. */
static void expect_example(const char *name, const char *expected)
{
    char path[512];
    const char *argv[] = {path, NULL};
    h_run_t run;

    snprintf(path, sizeof(path), "%s/examples/%s", SHOAL_BUILD_DIR, name);
    h_run(argv, &run);
    cr_assert_eq(run.exit_code, 0, "%s exited %d: %s", name, run.exit_code,
                 run.err);
    cr_assert_str_eq(run.out, expected, "%s printed:\n%s", name, run.out);
    h_run_free(&run);
}

Test(examples, hello_greets_james_through_a_server_chosen_by_index,
     .timeout = T_TIMEOUT)
{
    expect_example("hello", "Hello James\n");
}

Test(examples, rpc_adds_at_once_and_multiplies_after_a_second,
     .timeout = T_TIMEOUT)
{
    expect_example("rpc", "add(1,2,3,4,5) = 15\nmultiply(1,2,3,4,5) = 120\n");
}

Test(examples, events_answers_a_sum_event_with_a_result_event,
     .timeout = T_TIMEOUT)
{
    expect_example("events", "result 10\n");
}
