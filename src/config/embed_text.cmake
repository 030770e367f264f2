# cmake -DINPUT=examples/aviary.yaml -DNAME=examples/aviary.yaml -DOUTPUT=embedded_default.cpp \
#       -P embed_text.cmake
# Writes a .cpp defining aviary::config::generated::kDefaultYaml as the text of INPUT, in a
# raw string literal whose delimiter is chosen so it cannot occur in the text.
file(READ "${INPUT}" text)
set(delimiter "aviary")
set(n 0)
string(FIND "${text}" ")${delimiter}\"" found)
while(NOT found EQUAL -1)
    math(EXPR n "${n} + 1")
    set(delimiter "aviary${n}")
    string(FIND "${text}" ")${delimiter}\"" found)
endwhile()
set(content "// Generated from ${NAME} by src/config/embed_text.cmake: edit that file instead.
#include \"config/embedded.hpp\"

namespace aviary::config::generated {

const std::string_view kDefaultYaml = R\"${delimiter}(${text})${delimiter}\";

}  // namespace aviary::config::generated
")
file(WRITE "${OUTPUT}" "${content}")
