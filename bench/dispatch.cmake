# The dispatch benchmark (bench/dispatch_bench.c): included from the top
# CMakeLists.txt, so paths are relative to the repository root.
# scripts/bench-dispatch builds it and runs it beside the Node.js peer.
add_executable(dispatch_bench bench/dispatch_bench.c)
target_link_libraries(dispatch_bench PRIVATE shoal_static)
# The workers are the real shoal command and the collatz plugin.
add_dependencies(dispatch_bench shoal shoal_app_collatz)
target_compile_definitions(dispatch_bench PRIVATE
    SHOAL_BENCH_SHOAL_BIN="$<TARGET_FILE:shoal>"
    SHOAL_BENCH_PLUGIN_DIR="${SHOAL_PLUGIN_DIR}")
set_target_properties(dispatch_bench PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
