// Makes the system zlib importable from Swift; nothing else lives here.
#include <zlib.h>
