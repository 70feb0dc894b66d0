#ifndef CMNIST_H
#define CMNIST_H

#include <stddef.h>

/// One gzip-compressed IDX file of MNIST, compiled into the binary.
typedef struct {
  const char *name;            ///< the standard file name without ".gz"
  const unsigned char *bytes;  ///< the gzip bytes
  size_t count;                ///< the number of gzip bytes
} cmnist_file;

/// The four bundled MNIST files, in the order train images, train labels,
/// test images, test labels.
const cmnist_file *cmnist_files(void);

/// The number of entries `cmnist_files` returns (always 4).
size_t cmnist_file_count(void);

#endif
