# cmake -DINPUT=scripts/aviary-completion.bash -DNAME=scripts/aviary-completion.bash \
#       -DSYMBOL=kCompletionBash -DOUTPUT=completion_script.cpp -P embed_script.cmake
# Writes a .cpp defining aviary::cli::generated::SYMBOL as the text of INPUT, in a raw string
# literal whose delimiter is chosen so it cannot occur in the text.
file(READ "${INPUT}" text)
set(delimiter "aviary")
set(n 0)
string(FIND "${text}" ")${delimiter}\"" found)
while(NOT found EQUAL -1)
    math(EXPR n "${n} + 1")
    set(delimiter "aviary${n}")
    string(FIND "${text}" ")${delimiter}\"" found)
endwhile()
file(WRITE "${OUTPUT}" "// Generated from ${NAME} by src/cli/embed_script.cmake: edit that file instead.
#include \"cli/embedded.hpp\"

namespace aviary::cli::generated {

const std::string_view ${SYMBOL} = R\"${delimiter}(${text})${delimiter}\";

}  // namespace aviary::cli::generated
")
