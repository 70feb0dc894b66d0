// Makes the system TurboJPEG (libjpeg-turbo) importable; the decoding itself is in CImageCodecs.
#include <turbojpeg.h>
