// std::ios_base_library_init(), the one GLIBCXX_3.4.32 symbol TorchSharp's glue (built with GCC 13) needs and Debian 12's
// libstdc++ (GCC 12) lacks. GCC 13's <iostream> only references it (it is never called): GCC 13's libstdc++ sets up the
// standard streams itself, and the reference makes a program need that library. Under GCC 12 each file that includes
// <iostream> sets them up with a static std::ios_base::Init, which including <iostream> here creates, before the
// glue runs. Built by bench/setup-peers.sh with glibcxx_3_4_32_shim.map.
#include <iostream>

namespace std { void ios_base_library_init() {} }
