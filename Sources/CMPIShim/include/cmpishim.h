// Loads an MPI library at run time (dlopen), so cytogan builds and runs without MPI and uses it
// when a launcher (mpirun, srun) started it. Only the few calls data-parallel training needs.
#ifndef CMPISHIM_H
#define CMPISHIM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Loads libmpi (Open MPI's libmpi.so.40, else MPICH's libmpi.so.12, or the file named by
/// CYTOGAN_LIBMPI) and initialises MPI. Returns 0 on success; otherwise a message is available
/// from cmpi_error().
int cmpi_init(void);
/// The last failure's message (empty if none).
const char *cmpi_error(void);
/// The library that was loaded ("" before cmpi_init succeeds).
const char *cmpi_library(void);
int cmpi_rank(void);
int cmpi_size(void);
/// In-place sum over all ranks of MPI_COMM_WORLD. Return the MPI error code (0: success).
int cmpi_allreduce_sum_float(float *buffer, int count);
int cmpi_allreduce_sum_double(double *buffer, int count);
int cmpi_barrier(void);
/// Ends every rank of the job with `code` (MPI_Abort on MPI_COMM_WORLD).
void cmpi_abort(int code);
int cmpi_finalize(void);

#ifdef __cplusplus
}
#endif
#endif
