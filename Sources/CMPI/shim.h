// Makes Open MPI's mpi.h importable from Swift, and re-exports as functions the handles
// that mpi.h defines as macros, which Swift cannot import. Only built with the MPI trait.
#include <mpi.h>

static inline MPI_Comm ptrain_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype ptrain_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype ptrain_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype ptrain_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Op ptrain_mpi_max(void) { return MPI_MAX; }
static inline MPI_Info ptrain_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline void *ptrain_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline int ptrain_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int ptrain_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
