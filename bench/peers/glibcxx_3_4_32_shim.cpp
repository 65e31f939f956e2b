// std::ios_base_library_init(), the one GLIBCXX_3.4.32 symbol TorchSharp's glue (built with GCC 13) needs and Debian 12's
// libstdc++ (GCC 12) lacks. GCC 13 emits a call to it from every file that includes <iostream>, to make sure the
// standard streams are set up; under GCC 12 that is the job of a static std::ios_base::Init object in each such file,
// which including <iostream> here creates. Built by bench/setup-peers.sh with glibcxx_3_4_32_shim.map.
#include <iostream>

namespace std { void ios_base_library_init() {} }
