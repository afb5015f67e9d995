// OpenBLAS: CBLAS for GEMM, thread control (openblas_set_num_threads, declared in its cblas.h),
// and the two LAPACK routines the project uses, declared here because Debian ships no lapacke.h
// with libopenblas-dev (the symbols are in libopenblas itself).
#include <cblas.h>

/// Symmetric eigendecomposition (divide and conquer), double precision, Fortran calling convention.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info);
/// Symmetric eigendecomposition (divide and conquer), single precision.
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
             float *w, float *work, const int *lwork, int *iwork, const int *liwork, int *info);
