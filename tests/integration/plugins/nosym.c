/* A shared object that is not a shoal plugin: it lacks the
 * shoal_plugin_register symbol (tests/integration/plugin_test.c). */
int nosym_answer(void);

int nosym_answer(void)
{
    return 42;
}
