// PNG through libpng's sequential read API, JPEG through TurboJPEG; see
// ImageCodecs.h for the contract.
#include "ImageCodecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/// The most pixels an image may have: Pillow's decompression-bomb limit
/// (2 × Image.MAX_IMAGE_PIXELS), past which it refuses to open a file too.
static const double maximum_pixels = 178956970.0;

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static void say(char *error, size_t error_size, const char *format, ...) {
  if (error_size == 0) return;
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(error, error_size, format, arguments);
  va_end(arguments);
  for (char *c = error; *c; c++)  // one line, whatever a library says
    if (*c == '\n' || *c == '\r') *c = ' ';
}

/// Copies `count` pixels of `from` channels into `to` channels (1 or 3), as Pillow's
/// convert("L") and convert("RGB") do.
static void convert_pixels(const unsigned char *source, int from, size_t count, unsigned char *target, int to) {
  if (from == to) {
    memcpy(target, source, count * (size_t)to);
  } else if (from == 1) {
    for (size_t i = 0; i < count; i++) target[3 * i] = target[3 * i + 1] = target[3 * i + 2] = source[i];
  } else {
    for (size_t i = 0; i < count; i++) {
      const unsigned char *p = source + 3 * i;
      target[i] = (unsigned char)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
    }
  }
}

static int check_size(int width, int height, char *error, size_t error_size) {
  if (width < 1 || height < 1) {
    say(error, error_size, "has no pixels (%d x %d)", width, height);
    return -1;
  }
  if ((double)width * (double)height > maximum_pixels) {
    say(error, error_size, "is %d x %d pixels, more than the %.0f an image may have (Pillow's decompression-bomb limit)",
        width, height, maximum_pixels);
    return -1;
  }
  return 0;
}

// MARK: - PNG

struct png_source {
  const unsigned char *bytes;
  size_t size;
  size_t offset;
};

struct png_failure {
  jmp_buf jump;
  char *error;
  size_t error_size;
};

static void png_read_bytes(png_structp png, png_bytep out, size_t count) {
  struct png_source *source = png_get_io_ptr(png);
  if (source->size - source->offset < count) png_error(png, "truncated: the file ends early");
  memcpy(out, source->bytes + source->offset, count);
  source->offset += count;
}

static void png_fail(png_structp png, png_const_charp message) {
  struct png_failure *failure = png_get_error_ptr(png);
  say(failure->error, failure->error_size, "is not a valid PNG (libpng: %s)", message);
  longjmp(failure->jump, 1);
}

/// libpng's warnings (an unknown chunk, a questionable colour profile) do not stop a read.
static void png_ignore_warning(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

/// Reads the header into `header` when `pixels` is NULL, else decodes into `pixels`.
static int png_run(const unsigned char *bytes, size_t size, ptrain_image_header *header, int channels,
                   unsigned char *pixels, char *error, size_t error_size) {
  struct png_failure failure;
  failure.error = error;
  failure.error_size = error_size;
  struct png_source source = {bytes, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_fail, png_ignore_warning);
  if (!png) {
    say(error, error_size, "cannot be read: libpng is out of memory");
    return -1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    say(error, error_size, "cannot be read: libpng is out of memory");
    return -1;
  }
  unsigned char *volatile image = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(failure.jump)) {
    png_destroy_read_struct(&png, &info, NULL);
    free(image);
    free(rows);
    return -1;
  }
  png_set_read_fn(png, &source, png_read_bytes);
  png_read_info(png, info);
  png_uint_32 width = png_get_image_width(png, info);
  png_uint_32 height = png_get_image_height(png, info);
  int color = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (!pixels) {
    header->width = (int)width;
    header->height = (int)height;
    header->gray = (color & PNG_COLOR_MASK_COLOR) == 0;
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
  }
  if ((int)width != header->width || (int)height != header->height) png_error(png, "its size changed");
  if (depth == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int decoded = png_get_channels(png, info);
  size_t row_bytes = png_get_rowbytes(png, info);
  if ((decoded != 1 && decoded != 3) || row_bytes != (size_t)width * (size_t)decoded)
    png_error(png, "an unexpected pixel layout after conversion");
  image = malloc(row_bytes * height);
  rows = malloc(sizeof(png_bytep) * height);
  if (!image || !rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < height; y++) rows[y] = image + (size_t)y * row_bytes;
  png_read_image(png, rows);
  convert_pixels(image, decoded, (size_t)width * height, pixels, channels);
  png_destroy_read_struct(&png, &info, NULL);
  free(image);
  free(rows);
  return 0;
}

// MARK: - JPEG

static int jpeg_run(const unsigned char *bytes, size_t size, ptrain_image_header *header, int channels,
                    unsigned char *pixels, char *error, size_t error_size) {
  tjhandle handle = tjInitDecompress();
  if (!handle) {
    say(error, error_size, "cannot be read: TurboJPEG did not start (%s)", tjGetErrorStr2(NULL));
    return -1;
  }
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(handle, bytes, (unsigned long)size, &width, &height, &subsampling, &colorspace) != 0) {
    say(error, error_size, "is not a valid JPEG (libjpeg-turbo: %s)", tjGetErrorStr2(handle));
    tjDestroy(handle);
    return -1;
  }
  if (!pixels) {
    header->width = width;
    header->height = height;
    header->gray = colorspace == TJCS_GRAY;
    tjDestroy(handle);
    return 0;
  }
  if (width != header->width || height != header->height) {
    say(error, error_size, "is not a valid JPEG (its size changed)");
    tjDestroy(handle);
    return -1;
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    say(error, error_size, "is a CMYK JPEG, which ptrain does not decode; save it as RGB");
    tjDestroy(handle);
    return -1;
  }
  int format = channels == 1 && colorspace == TJCS_GRAY ? TJPF_GRAY : TJPF_RGB;
  int decoded = format == TJPF_GRAY ? 1 : 3;
  unsigned char *image = decoded == channels ? pixels : malloc((size_t)width * (size_t)height * (size_t)decoded);
  if (!image) {
    say(error, error_size, "cannot be decoded: out of memory");
    tjDestroy(handle);
    return -1;
  }
  int status = tjDecompress2(handle, bytes, (unsigned long)size, image, width, 0, height, format, 0);
  // Warnings (extraneous bytes before a marker) do not stop a read, as in Pillow; a file
  // that ends early does, where libjpeg would fill the rest with gray.
  const char *message = status == 0 ? "" : tjGetErrorStr2(handle);
  int failed = status != 0 && (tjGetErrorCode(handle) != TJERR_WARNING || strstr(message, "Premature end") != NULL);
  if (failed) {
    say(error, error_size, "is not a valid JPEG (libjpeg-turbo: %s)", message);
  } else if (image != pixels) {
    convert_pixels(image, decoded, (size_t)width * (size_t)height, pixels, channels);
  }
  if (image != pixels) free(image);
  tjDestroy(handle);
  return failed ? -1 : 0;
}

// MARK: - Either

int ptrain_image_read_header(const unsigned char *bytes, size_t size, ptrain_image_header *header, char *error,
                             size_t error_size) {
  int status;
  if (size >= sizeof png_signature && memcmp(bytes, png_signature, sizeof png_signature) == 0) {
    status = png_run(bytes, size, header, 0, NULL, error, error_size);
  } else if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    status = jpeg_run(bytes, size, header, 0, NULL, error, error_size);
  } else {
    say(error, error_size, "is not a PNG or JPEG image (its first bytes are neither's signature)");
    return -1;
  }
  return status == 0 ? check_size(header->width, header->height, error, error_size) : status;
}

int ptrain_image_decode(const unsigned char *bytes, size_t size, const ptrain_image_header *header, int channels,
                        unsigned char *pixels, char *error, size_t error_size) {
  if (channels != 1 && channels != 3) {
    say(error, error_size, "cannot be decoded into %d channels (1 or 3)", channels);
    return -1;
  }
  ptrain_image_header expected = *header;
  if (size >= sizeof png_signature && memcmp(bytes, png_signature, sizeof png_signature) == 0)
    return png_run(bytes, size, &expected, channels, pixels, error, error_size);
  if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF)
    return jpeg_run(bytes, size, &expected, channels, pixels, error, error_size);
  say(error, error_size, "is not a PNG or JPEG image (its first bytes are neither's signature)");
  return -1;
}
