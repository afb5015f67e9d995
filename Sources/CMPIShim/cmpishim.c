// See cmpishim.h. Handles differ between the two MPI ABIs: Open MPI's MPI_COMM_WORLD, MPI_FLOAT,
// MPI_DOUBLE and MPI_SUM are the addresses of global objects (ompi_mpi_comm_world, ...) and
// MPI_IN_PLACE is (void *)1; MPICH's (and its derivatives') are fixed integers and MPI_IN_PLACE
// is (void *)-1. Both pass handles in integer registers, so one pointer-sized slot carries either.
#include "cmpishim.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*init_thread_fn)(int *, char ***, int, int *);
typedef int (*finalize_fn)(void);
// Open MPI: handles are pointers.
typedef int (*o_comm_int_fn)(void *, int *);
typedef int (*o_allreduce_fn)(const void *, void *, int, void *, void *, void *);
typedef int (*o_comm_fn)(void *);
typedef int (*o_abort_fn)(void *, int);
// MPICH: handles are ints.
typedef int (*m_comm_int_fn)(int, int *);
typedef int (*m_allreduce_fn)(const void *, void *, int, int, int, int);
typedef int (*m_comm_fn)(int);
typedef int (*m_abort_fn)(int, int);

static void *lib = NULL;
static int is_ompi = 0;
static char error_text[512] = "";
static char library_name[256] = "";
static void *comm_world, *type_float, *type_double, *op_sum, *in_place;
static void *f_rank, *f_size, *f_allreduce, *f_barrier, *f_abort;
static finalize_fn f_finalize;
static int rank_ = 0, size_ = 1;

const char *cmpi_error(void) { return error_text; }
const char *cmpi_library(void) { return library_name; }
int cmpi_rank(void) { return rank_; }
int cmpi_size(void) { return size_; }

static int fail(const char *what, const char *detail) {
    snprintf(error_text, sizeof error_text, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    return -1;
}

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) fail("libmpi lacks the symbol", name);
    return p;
}

int cmpi_init(void) {
    if (lib) return 0;
    const char *names[] = {getenv("CYTOGAN_LIBMPI"), "libmpi.so.40", "libmpi.so.12", "libmpi.so"};
    char tried[400] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !lib; i++) {
        if (!names[i] || !names[i][0]) continue;
        // RTLD_GLOBAL: Open MPI's own plugins resolve their symbols against libmpi.
        lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
        if (lib) snprintf(library_name, sizeof library_name, "%s", names[i]);
        else { strncat(tried, " ", sizeof tried - strlen(tried) - 1); strncat(tried, names[i], sizeof tried - strlen(tried) - 1); }
    }
    if (!lib) return fail("cannot load an MPI library (tried" , tried), -1;
    init_thread_fn init = (init_thread_fn)sym("MPI_Init_thread");
    f_finalize = (finalize_fn)sym("MPI_Finalize");
    f_rank = sym("MPI_Comm_rank");
    f_size = sym("MPI_Comm_size");
    f_allreduce = sym("MPI_Allreduce");
    f_barrier = sym("MPI_Barrier");
    f_abort = sym("MPI_Abort");
    if (!init || !f_finalize || !f_rank || !f_size || !f_allreduce || !f_barrier || !f_abort) return -1;
    void *ompi_world = dlsym(lib, "ompi_mpi_comm_world");
    if (ompi_world) {
        is_ompi = 1;
        comm_world = ompi_world;
        type_float = sym("ompi_mpi_float");
        type_double = sym("ompi_mpi_double");
        op_sum = sym("ompi_mpi_op_sum");
        if (!type_float || !type_double || !op_sum) return -1;
        in_place = (void *)1;
    } else {
        // MPICH ABI (mpi.h of MPICH, Intel MPI, MVAPICH, Cray MPICH).
        comm_world = (void *)(intptr_t)0x44000000;
        type_float = (void *)(intptr_t)0x4c00040a;
        type_double = (void *)(intptr_t)0x4c00080b;
        op_sum = (void *)(intptr_t)0x58000003;
        in_place = (void *)(intptr_t)-1;
    }
    int provided = 0;
    // MPI_THREAD_FUNNELED is 1 in both ABIs: only the training thread calls MPI.
    int rc = init(NULL, NULL, 1, &provided);
    if (rc != 0) { char b[32]; snprintf(b, sizeof b, "error code %d", rc); return fail("MPI_Init_thread failed", b); }
    if (is_ompi) {
        ((o_comm_int_fn)f_rank)(comm_world, &rank_);
        ((o_comm_int_fn)f_size)(comm_world, &size_);
    } else {
        ((m_comm_int_fn)f_rank)((int)(intptr_t)comm_world, &rank_);
        ((m_comm_int_fn)f_size)((int)(intptr_t)comm_world, &size_);
    }
    return 0;
}

static int allreduce(void *buffer, int count, void *type) {
    if (!lib) return fail("MPI is not initialised", NULL);
    if (is_ompi) return ((o_allreduce_fn)f_allreduce)(in_place, buffer, count, type, op_sum, comm_world);
    return ((m_allreduce_fn)f_allreduce)(in_place, buffer, count, (int)(intptr_t)type, (int)(intptr_t)op_sum,
                                        (int)(intptr_t)comm_world);
}

int cmpi_allreduce_sum_float(float *buffer, int count) { return allreduce(buffer, count, type_float); }
int cmpi_allreduce_sum_double(double *buffer, int count) { return allreduce(buffer, count, type_double); }

int cmpi_barrier(void) {
    if (!lib) return fail("MPI is not initialised", NULL);
    if (is_ompi) return ((o_comm_fn)f_barrier)(comm_world);
    return ((m_comm_fn)f_barrier)((int)(intptr_t)comm_world);
}

void cmpi_abort(int code) {
    if (!lib) exit(code);
    if (is_ompi) ((o_abort_fn)f_abort)(comm_world, code);
    else ((m_abort_fn)f_abort)((int)(intptr_t)comm_world, code);
    exit(code);
}

int cmpi_finalize(void) {
    if (!lib) return 0;
    return f_finalize();
}
