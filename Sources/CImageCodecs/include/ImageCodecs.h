// PNG and JPEG decoding for ptrain's image folders and `ptrain predict`, through
// libpng and libjpeg-turbo's TurboJPEG API. C, because libpng reports errors by
// longjmp, which must not cross Swift frames; every error here becomes a return
// code and a message.
#ifndef PTRAIN_IMAGE_CODECS_H
#define PTRAIN_IMAGE_CODECS_H

#include <stddef.h>

/// What the header of an encoded image says.
typedef struct {
  int width;
  int height;
  /// 1 when the image holds only gray levels (a gray or gray+alpha PNG, a grayscale
  /// JPEG), else 0.
  int gray;
} ptrain_image_header;

/// Reads the header of the PNG or JPEG image in `bytes` (the format is told by its first
/// bytes). Returns 0, or -1 with a one-line reason in `error` (NUL-terminated, at most
/// `error_size` bytes).
int ptrain_image_read_header(const unsigned char *bytes, size_t size, ptrain_image_header *header, char *error,
                             size_t error_size);

/// Decodes the PNG or JPEG image in `bytes`, whose header is `header`, into `pixels`:
/// `header->width * header->height * channels` bytes, rows top to bottom, channels
/// interleaved. `channels` is 1 or 3. The conversion is Pillow's `convert("L")` or
/// `convert("RGB")`: alpha is dropped, a palette is looked up, gray is repeated into RGB,
/// RGB becomes gray as (19595 R + 38470 G + 7471 B + 32768) >> 16, and 16-bit samples
/// keep their high byte. A truncated or corrupt image is an error, not a partial image.
/// Returns 0, or -1 with a one-line reason in `error`.
int ptrain_image_decode(const unsigned char *bytes, size_t size, const ptrain_image_header *header, int channels,
                        unsigned char *pixels, char *error, size_t error_size);

#endif
