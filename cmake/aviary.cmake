# aviary_component(NAME SOURCES a.cpp b.cpp DEPS core store LIBS Boost::json)
# Makes src/NAME a static library aviary_NAME. DEPS mirror the component graph of docs/architecture.md;
# the include_rules test fails on an #include that crosses it.
# Designated initialisers that leave defaulted members out are the house idiom.
# GCC 12 at -O1 and above reports Asio's awaitable frame allocator (aligned_alloc paired with its
# own operator delete) as -Wmismatched-new-delete in every coroutine: a false positive.
set(AVIARY_WARNINGS -Wall -Wextra -Wpedantic -Wno-missing-field-initializers
    -Wno-mismatched-new-delete)
# Under the sanitizers (-O1 with ASan instrumentation) GCC 12 reports std::regex's internal
# std::function members as -Wmaybe-uninitialized: a false positive inside libstdc++ that only
# appears in that build, so it stays a warning there (and an error everywhere else).
if(AVIARY_WERROR)
    list(APPEND AVIARY_WARNINGS -Werror)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_FLAGS MATCHES "-fsanitize")
        list(APPEND AVIARY_WARNINGS -Wno-error=maybe-uninitialized)
    endif()
endif()

# Optimised builds put each function in its own section, so the linker can lay out the code
# `aviary supervise` runs in one place (src/cli/CMakeLists.txt, docs/architecture.md).
set(AVIARY_SECTIONS $<$<CONFIG:Release,RelWithDebInfo>:-ffunction-sections>)

function(aviary_component name)
    cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LIBS" ${ARGN})
    add_library(aviary_${name} STATIC ${ARG_SOURCES})
    target_include_directories(aviary_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(aviary_${name} PRIVATE ${AVIARY_WARNINGS} ${AVIARY_SECTIONS})
    foreach(dep IN LISTS ARG_DEPS)
        target_link_libraries(aviary_${name} PUBLIC aviary_${dep})
    endforeach()
    if(ARG_LIBS)
        target_link_libraries(aviary_${name} PUBLIC ${ARG_LIBS})
    endif()
endfunction()

# aviary_test(NAME SOURCES ... DEPS ...): one gtest binary per component.
function(aviary_test name)
    cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LIBS;LABELS;PROPERTIES" ${ARGN})
    add_executable(${name} ${ARG_SOURCES})
    target_compile_options(${name} PRIVATE ${AVIARY_WARNINGS})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
    foreach(dep IN LISTS ARG_DEPS)
        target_link_libraries(${name} PRIVATE aviary_${dep})
    endforeach()
    target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
    set(labels unit)
    if(ARG_LABELS)
        set(labels ${ARG_LABELS})
    endif()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
                         PROPERTIES LABELS "${labels}" TIMEOUT 120 ${ARG_PROPERTIES})
endfunction()

# aviary_embed_text(OUT_VAR INPUT file NAME shown HEADER x/embedded.hpp NAMESPACE ns SYMBOL kX)
# Compiles a text file into the binary, regenerated whenever the file changes, so a shipped
# file and the binary's copy cannot drift apart. Sets OUT_VAR to the generated .cpp.
function(aviary_embed_text out_var)
    cmake_parse_arguments(ARG "" "INPUT;NAME;HEADER;NAMESPACE;SYMBOL" "" ${ARGN})
    get_filename_component(stem ${ARG_INPUT} NAME_WE)
    set(output ${CMAKE_CURRENT_BINARY_DIR}/embedded_${stem}.cpp)
    add_custom_command(
        OUTPUT ${output}
        COMMAND ${CMAKE_COMMAND} -DINPUT=${ARG_INPUT} -DNAME=${ARG_NAME} -DHEADER=${ARG_HEADER}
                -DNAMESPACE=${ARG_NAMESPACE} -DSYMBOL=${ARG_SYMBOL} -DOUTPUT=${output}
                -P ${PROJECT_SOURCE_DIR}/cmake/embed_text.cmake
        DEPENDS ${ARG_INPUT} ${PROJECT_SOURCE_DIR}/cmake/embed_text.cmake
        COMMENT "Embedding ${ARG_NAME}"
        VERBATIM)
    set(${out_var} ${output} PARENT_SCOPE)
endfunction()
