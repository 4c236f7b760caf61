# Included by the root CMakeLists.txt when ZIGZAG_FUZZ=ON, before any target is defined: every
# library of the build gets libFuzzer's coverage instrumentation and ASan + UBSan, so the fuzz
# targets (fuzz/CMakeLists.txt) see coverage inside core/ and server/. Needs clang; use a build
# folder of its own (scripts/fuzz.sh configures build-fuzz with CC=clang-14 CXX=clang++-14).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "ZIGZAG_FUZZ=ON needs clang (libFuzzer): configure a separate build folder "
                      "with CC=clang-14 CXX=clang++-14, as scripts/fuzz.sh does")
endif()
if(ZIGZAG_HAVE_CUDA)
  message(FATAL_ERROR "ZIGZAG_FUZZ=ON builds the CPU code only: add -DZIGZAG_CUDA=OFF")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=undefined)
add_link_options(-fsanitize=address,undefined)
