/* queue_timeout's lines: one FIFO per key; only the head is woken, and when
 * it leaves the next one is at once; keys do not share a line. */
#include <event2/event.h>

#include "check.h"
#include "sluice/waitq.h"

static int woken[4];

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    woken[(int)(intptr_t)arg]++;
}

static void turn(struct event_base *base)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct waiter w[4] = { 0 };
    struct event *ev[4];
    for (int i = 0; i < 4; i++)
        ev[i] = event_new(base, -1, 0, on_wake, (void *)(intptr_t)i);
    CHECK(!waitq_busy("a"));
    CHECK(waitq_join(&w[0], "a", ev[0]));  /* the first in line is its head */
    CHECK(!waitq_join(&w[1], "a", ev[1]));
    CHECK(!waitq_join(&w[2], "a", ev[2]));
    CHECK(waitq_join(&w[3], "b", ev[3]));  /* another key, another line */
    CHECK(waitq_busy("a") && waitq_count() == 4);
    CHECK(waitq_is_head(&w[0]) && !waitq_is_head(&w[1]));
    waitq_poke("a"); /* room came: the head is woken, no one else */
    turn(base);
    CHECK(woken[0] == 1 && woken[1] == 0 && woken[2] == 0 && woken[3] == 0);
    waitq_leave(&w[1]); /* leaving from the middle wakes no one */
    turn(base);
    CHECK(woken[1] == 0 && woken[2] == 0 && waitq_count() == 3);
    waitq_leave(&w[0]); /* the head leaves: the next is head, woken at once */
    turn(base);
    CHECK(waitq_is_head(&w[2]) && woken[2] == 1);
    waitq_leave(&w[2]);
    waitq_leave(&w[2]); /* twice: nothing */
    CHECK(!waitq_busy("a") && waitq_count() == 1);
    waitq_leave(&w[3]);
    CHECK(waitq_count() == 0 && woken[3] == 0);
    for (int i = 0; i < 4; i++)
        event_free(ev[i]);
    event_base_free(base);
    waitq_shutdown();
    return check_done();
}
