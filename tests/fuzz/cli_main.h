/*
 * tests/fuzz/cli_main.h — forced into the fuzzing build of core/cli.c
 * (-include), whose main is renamed envdb_cli_main (-Dmain=...) so that
 * tests/fuzz/fuzz_cli.c can call it.
 */
#ifndef ENVDB_FUZZ_CLI_MAIN_H
#define ENVDB_FUZZ_CLI_MAIN_H
int envdb_cli_main(int argc, char **argv);
#endif
