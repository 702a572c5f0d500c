/* Allocation counter for benches/allocs.sh: an LD_PRELOAD shim that counts malloc, calloc,
 * realloc and free calls of the process it is loaded into and writes the totals to stderr on
 * SIGUSR2 (ptproxy does not use that signal), as one line:
 *   ALLOCS pid=N malloc=N calloc=N realloc=N free=N
 * The script reads it before and after a load and divides by the requests served. calloc
 * requests made while dlsym itself resolves the real functions are served from a static buffer.
 * Measurement only: the handler formats with snprintf, which is not async-signal-safe. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <unistd.h>
#include <signal.h>
static atomic_ulong n_malloc, n_calloc, n_realloc, n_free;
static void *(*real_malloc)(size_t); static void *(*real_calloc)(size_t,size_t);
static void *(*real_realloc)(void*,size_t); static void (*real_free)(void*);
static char tmpbuf[65536]; static size_t tmppos;
static void init(void){ real_malloc=dlsym(RTLD_NEXT,"malloc"); real_calloc=dlsym(RTLD_NEXT,"calloc"); real_realloc=dlsym(RTLD_NEXT,"realloc"); real_free=dlsym(RTLD_NEXT,"free"); }
void *malloc(size_t s){ if(!real_malloc) init(); n_malloc++; return real_malloc(s); }
void *calloc(size_t a,size_t b){ if(!real_calloc){ void*p=tmpbuf+tmppos; tmppos+=(a*b+15)&~15; return p;} n_calloc++; return real_calloc(a,b); }
void *realloc(void*p,size_t s){ if(!real_realloc) init(); n_realloc++; return real_realloc(p,s); }
void free(void*p){ if((char*)p>=tmpbuf && (char*)p<tmpbuf+sizeof tmpbuf) return; if(!real_free) init(); n_free++; real_free(p); }
static void dump(int sig){ char b[200]; int l=snprintf(b,sizeof b,"ALLOCS pid=%d malloc=%lu calloc=%lu realloc=%lu free=%lu\n",getpid(),n_malloc,n_calloc,n_realloc,n_free); write(2,b,l); }
__attribute__((constructor)) static void ctor(void){ signal(SIGUSR2, dump); }
