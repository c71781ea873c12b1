package analytics.engine.workers;

import analytics.engine.workers.launch.WorkerLauncher;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What {@code /health} and the {@code analytics.python.workers} gauges say about the workers: each slot's state
 * (ready, busy, starting, down) and the per-worker list.
 */
final class PoolStatus {

    private PoolStatus() {
    }

    /** The pool's part of {@code /health}: its workers, admission, commons-pool2 counts, launcher. */
    static Map<String, Object> snapshot(boolean available, WorkerSupervisor s, Admission admission,
                                        org.apache.commons.pool2.impl.GenericObjectPool<WorkerHandle> p,
                                        int maxConcurrent, Map<String, String> pythonVersions, boolean reloading,
                                        WorkerLauncher launcher) {
        Map<String, Object> st = new LinkedHashMap<>();
        st.put("available", available);
        st.put("workers", countByState(s));
        st.put("worker_list", workerList(s));
        st.put("breaker", admission.breakerState());
        st.put("in_flight", admission.inFlight());
        if (p != null) {
            st.put("pool", Map.of("idle", p.getNumIdle(), "lent", p.getNumActive(), "waiting", p.getNumWaiters()));
        }
        st.put("max_concurrent", maxConcurrent);
        st.put("python", pythonVersions);
        st.put("restarts_total", s == null ? 0 : s.restartsTotal());
        st.put("reloading", reloading);
        if (launcher != null) {
            st.put("worker_start", launcher.status()); // mode, fork-server template, spawn fallback and why
        }
        return st;
    }

    static Map<String, Integer> countByState(WorkerSupervisor s) {
        Map<String, Integer> c = new LinkedHashMap<>();
        c.put("ready", 0);
        c.put("busy", 0);
        c.put("starting", 0);
        c.put("down", 0);
        if (s == null) {
            return c;
        }
        for (WorkerSlot slot : s.slots) {
            c.merge(slotState(slot), 1, Integer::sum);
        }
        return c;
    }

    static String slotState(WorkerSlot slot) {
        if (slot.down) {
            return "down";
        }
        WorkerHandle h = slot.current;
        if (h == null) {
            return "starting";
        }
        return switch (h.state()) {
            case READY -> "ready";
            case BUSY -> "busy";
            case RETIRING -> h.hasRequestInFlight() ? "busy" : "starting";
            case STARTING, DEAD -> "starting";
        };
    }

    /** One entry per live worker (a slot being replaced shows both), or per empty slot. */
    static List<Map<String, Object>> workerList(WorkerSupervisor s) {
        List<Map<String, Object>> list = new ArrayList<>();
        if (s != null) {
            List<WorkerHandle> handles = new ArrayList<>(s.live);
            handles.sort(Comparator.comparingInt((WorkerHandle h) -> h.slot).thenComparingLong(h -> h.generation));
            for (WorkerSlot slot : s.slots) {
                boolean any = false;
                for (WorkerHandle h : handles) {
                    if (h.slot != slot.id) {
                        continue;
                    }
                    any = true;
                    Map<String, Object> w = new LinkedHashMap<>();
                    w.put("id", h.slot);
                    w.put("pid", h.pid);
                    w.put("state", h == slot.current ? slotState(slot) : "retiring");
                    w.put("requests", h.requests.get());
                    w.put("restarts", slot.restarts);
                    w.put("rss_bytes", h.rssBytes);
                    w.put("uptime_s", Math.round(h.uptimeSeconds() * 10) / 10.0);
                    list.add(w);
                }
                if (!any) {
                    Map<String, Object> w = new LinkedHashMap<>();
                    w.put("id", slot.id);
                    w.put("pid", -1);
                    w.put("state", slot.down ? "down" : "starting");
                    w.put("requests", 0);
                    w.put("restarts", slot.restarts);
                    w.put("rss_bytes", -1);
                    w.put("uptime_s", 0.0);
                    if (slot.lastFailure != null) {
                        w.put("last_failure", slot.lastFailure);
                    }
                    list.add(w);
                } else if (slot.down || slot.lastFailure != null) {
                    list.get(list.size() - 1).put("last_failure", slot.lastFailure);
                }
            }
        }
        return list;
    }

    /** " (last failure: …)" naming the latest start-up failure of any slot, or "" when none failed. */
    static String downSuffix(WorkerSupervisor supervisor) {
        if (supervisor == null) {
            return "";
        }
        List<String> why = new ArrayList<>();
        for (WorkerSlot s : supervisor.slots) {
            String f = s.lastFailure;
            if (f != null) {
                why.add(f);
            }
        }
        return why.isEmpty() ? "" : " (last failure: " + why.get(why.size() - 1) + ")";
    }
}
