/* ul_clock.h: the two clocks the tools time things with, in the units they
 * print: monotonic (durations, deadlines) and wall (timestamps in events). */
#ifndef UL_CLOCK_H
#define UL_CLOCK_H

#include <stdint.h>

/* Monotonic time in seconds (for durations and rates). */
double ul_clock_mono_s(void);

/* Monotonic time in milliseconds (for deadlines). */
int64_t ul_clock_mono_ms(void);

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t ul_clock_wall_ms(void);

#endif
