# cmake -DINPUT=file -DNAME=shown/name -DHEADER=x/embedded.hpp -DNAMESPACE=aviary::x::generated
#       -DSYMBOL=kText -DOUTPUT=out.cpp -P embed_text.cmake
# Writes a .cpp defining NAMESPACE::SYMBOL as the text of INPUT, in a raw string literal whose
# delimiter is chosen so it cannot occur in the text. Called through aviary_embed_text().
file(READ "${INPUT}" text)
set(delimiter "aviary")
set(n 0)
string(FIND "${text}" ")${delimiter}\"" found)
while(NOT found EQUAL -1)
    math(EXPR n "${n} + 1")
    set(delimiter "aviary${n}")
    string(FIND "${text}" ")${delimiter}\"" found)
endwhile()
file(WRITE "${OUTPUT}" "// Generated from ${NAME} by cmake/embed_text.cmake: edit ${NAME} instead.
#include \"${HEADER}\"

namespace ${NAMESPACE} {

const std::string_view ${SYMBOL} = R\"${delimiter}(${text})${delimiter}\";

}  // namespace ${NAMESPACE}
")
