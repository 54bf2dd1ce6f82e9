/* The shoal command: picks a subcommand and hands it the arguments. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_command_t cli_commands[] = {
    {"node", "run a node that hosts applications", cli_cmd_node,
     cli_usage_node},
    {"call", "call an action of an application and print the reply",
     cli_cmd_call, cli_usage_call},
    {"tell", "send a message to an application (no reply)", cli_cmd_tell,
     cli_usage_tell},
    {"emit", "send a named event to a node", cli_cmd_emit, cli_usage_emit},
    {"describe", "print a node's description", cli_cmd_describe,
     cli_usage_describe},
    {"submit", "submit tasks (NDJSON) to a dispatcher, print outcomes",
     cli_cmd_submit, cli_usage_submit},
    {"supervise", "run a supervisor and its pool of worker nodes",
     cli_cmd_supervise, cli_usage_supervise},
    {"status", "print the workers of a supervisor", cli_cmd_status,
     cli_usage_status},
    {"stop", "stop a supervisor and its workers", cli_cmd_stop,
     cli_usage_stop},
    {"restart", "restart a supervisor's workers", cli_cmd_restart,
     cli_usage_restart},
};

#define CLI_COMMAND_COUNT (sizeof(cli_commands) / sizeof(cli_commands[0]))

static void main_usage(FILE *out)
{
    fprintf(out, "usage: shoal COMMAND [OPTIONS] [ARGS]\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < CLI_COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", cli_commands[i].name,
                cli_commands[i].summary);
    fprintf(out, "\n`shoal COMMAND --help` describes each command.\n"
                 "Addresses are tcp://HOST:PORT or unix:///PATH.\n");
}

int main(int argc, char **argv)
{
    /* A peer that vanishes must cost its connection (EPIPE), not the
     * process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        main_usage(stderr);
        return CLI_EXIT_FAILURE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("shoal %s\n", SHOAL_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < CLI_COMMAND_COUNT; i++) {
        if (strcmp(argv[1], cli_commands[i].name) != 0)
            continue;
        for (int a = 2; a < argc; a++)
            if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
                cli_commands[i].usage(stdout);
                return CLI_EXIT_OK;
            }
        return cli_commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "shoal: unknown command '%s'\n\n", argv[1]);
    main_usage(stderr);
    return CLI_EXIT_FAILURE;
}
