package imaging

/*
#include <malloc.h>
*/
import "C"

// limitMallocArenas caps glibc's malloc arenas at 2. libvips allocates from many
// worker threads; with the default (8 per core) freed memory stays spread over
// arenas and RSS grows far past what is in use: 16 concurrent 12 MP jobs peaked at
// 477 MiB with the default and 350 MiB with 2 arenas (bench/RESULTS.md).
// Same effect as MALLOC_ARENA_MAX=2, without relying on the environment.
//
// A fixed mmap threshold keeps every allocation of 1 MiB and more (frames, pixel
// copies for anonymization, ONNX Runtime's activations) in its own mapping, returned
// to the system when freed. glibc's default threshold rises to the largest block
// freed (up to 32 MiB), after which those blocks come from the arenas, and freed
// frames stay resident as fragments.
func limitMallocArenas() {
	C.mallopt(C.M_ARENA_MAX, 2)
	C.mallopt(C.M_MMAP_THRESHOLD, 1<<20)
}
