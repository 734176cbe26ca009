/* Build description for `python -m ringred.info`. */
#include <stdio.h>

#include "core/internal.h"

const char *rr_build_info(void)
{
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 512];
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(lib, &len);
    for (int i = 0; i < len; i++)
        if (lib[i] == '\n' || lib[i] == '\r') {
            lib[i] = '\0';
            break;
        }
    snprintf(buf, sizeof buf,
             "version=%d.%d; compiler=gcc %d.%d; mpi_standard=%d.%d; mpi_library=%s; "
#ifdef __SANITIZE_ADDRESS__
             "sanitize=address,undefined; "
#endif
             "kernels=%s",
             RR_VERSION_MAJOR, RR_VERSION_MINOR, __GNUC__, __GNUC_MINOR__, MPI_VERSION,
             MPI_SUBVERSION, lib, rr_kernel_path());
    return buf;
}
