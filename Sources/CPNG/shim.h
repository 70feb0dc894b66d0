// Makes the system libpng importable; the decoding itself is in CImageCodecs.
#include <png.h>
