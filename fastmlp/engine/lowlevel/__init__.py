"""Pieces of the engine that know nothing about MLPs: GEMM through the BLAS by address
(:mod:`.blas`), register-tiled products on rows given by address (:mod:`.tiles`) and dot
products for layers of few units (:mod:`.dots`), the spin
barrier and cache-line aligned buffers (:mod:`.sync`), the CPU's ``pause`` hint (:mod:`.cpu`),
flushing denormals (:mod:`.fpenv`), and the thread counts around compiled calls
(:mod:`.threads`)."""
