// Makes hwloc importable from Swift; nothing else lives here.
#include <hwloc.h>
