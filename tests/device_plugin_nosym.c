/* A shared object that is not a device plugin: it lacks
 * pathflow_device_plugin_open. PATHFLOW_DEVICE_PLUGINS naming it must fail
 * pf_init with a message naming the path (tests/test_device_plugins.c). */
__attribute__((visibility("default"))) int pathflow_not_a_device_plugin(void);

int pathflow_not_a_device_plugin(void) { return 0; }
