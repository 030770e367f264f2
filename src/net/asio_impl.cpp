// The one TU that compiles Asio's and Beast's out-of-line definitions (BOOST_*_SEPARATE_COMPILATION
// is set for every user of aviary_net): each other TU then skips them, which is most of the
// per-file cost of including Beast.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
