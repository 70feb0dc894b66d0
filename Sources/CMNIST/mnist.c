// The real MNIST, embedded at compile time with C23 #embed so that one
// ptrain binary trains offline wherever it is copied.
#include "CMNIST.h"

static const unsigned char train_images[] = {
#embed "data/train-images-idx3-ubyte.gz"
};
static const unsigned char train_labels[] = {
#embed "data/train-labels-idx1-ubyte.gz"
};
static const unsigned char test_images[] = {
#embed "data/t10k-images-idx3-ubyte.gz"
};
static const unsigned char test_labels[] = {
#embed "data/t10k-labels-idx1-ubyte.gz"
};

static const cmnist_file files[4] = {
  {"train-images-idx3-ubyte", train_images, sizeof train_images},
  {"train-labels-idx1-ubyte", train_labels, sizeof train_labels},
  {"t10k-images-idx3-ubyte", test_images, sizeof test_images},
  {"t10k-labels-idx1-ubyte", test_labels, sizeof test_labels},
};

const cmnist_file *cmnist_files(void) { return files; }

size_t cmnist_file_count(void) { return 4; }
