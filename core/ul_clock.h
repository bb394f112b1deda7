/* ul_clock.h: the clocks everything times things with, in the units they
 * print: monotonic (durations, deadlines), wall (timestamps in events) and
 * the process's CPU time (benchmarks). */
#ifndef UL_CLOCK_H
#define UL_CLOCK_H

#include <stdint.h>

/* Monotonic time in seconds (for durations and rates). */
double ul_clock_mono_s(void);

/* Monotonic time in milliseconds (for deadlines). */
int64_t ul_clock_mono_ms(void);

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t ul_clock_wall_ms(void);

/* CPU time of this process (all threads) in seconds. */
double ul_clock_cpu_s(void);

#endif
