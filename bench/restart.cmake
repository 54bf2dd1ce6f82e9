# The supervisor's benchmark (bench/restart_bench.c): crash-to-answer time
# of a restarted worker and the memory of an idle one. Included from the top
# CMakeLists.txt, so paths are relative to the repository root.
add_executable(restart_bench bench/restart_bench.c)
target_link_libraries(restart_bench PRIVATE shoal_static)
# The workers it supervises are the real shoal command built alongside.
add_dependencies(restart_bench shoal)
target_compile_definitions(restart_bench PRIVATE
    SHOAL_BENCH_SHOAL_BIN="$<TARGET_FILE:shoal>")
set_target_properties(restart_bench PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
