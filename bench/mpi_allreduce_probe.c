/* The cost of the gradient's all-reduce alone, without descent (docs/distributed.md): one
 * MPI_Allreduce (sum, in place) of the default MLP's 269,322 float32 (1.08 MB) between the
 * ranks, REPS times (default 200) after a barrier each; rank 0 prints the fastest and the mean.
 *   mpicc -O2 bench/mpi_allreduce_probe.c -o /tmp/probe
 *   mpirun -np 2 /tmp/probe                                  (OpenMPI's defaults: ob1 + vader)
 *   mpirun -np 2 --mca pml ob1 --mca btl self,tcp /tmp/probe (loopback TCP, as the tests)
 *   mpirun -np 2 --mca mpi_yield_when_idle 1 /tmp/probe      (a waiting rank yields its core)
 * (add --allow-run-as-root as root) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int r; MPI_Comm_rank(MPI_COMM_WORLD, &r);
  int n = 269322; float* x = malloc(n * sizeof(float));
  for (int i = 0; i < n; ++i) x[i] = 1.0f;
  int reps = argc > 1 ? atoi(argv[1]) : 200; /* REPS */
  double best = 1e9, sum = 0;
  for (int k = 0; k < reps; ++k) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double t = MPI_Wtime() - t0; sum += t; if (t < best) best = t;
  }
  if (r == 0) printf("1.08 MB allreduce: min %.3f ms, mean %.3f ms\n", best * 1e3, sum / reps * 1e3);
  MPI_Finalize();
}
