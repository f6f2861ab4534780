package org.inbec.testservers;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;

import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.cluster.health.ClusterHealthStatus;
import org.opensearch.http.HttpServerTransport;

/**
 * A single-node OpenSearch cluster on 127.0.0.1 for the inbec-export test suite.
 *
 * <p>Usage: {@code OpenSearchTestNode BASE_DIR [HTTP_PORT]}. A port of 0 (the default)
 * lets the kernel pick a free one. Once the cluster is yellow, one line
 * {@code INBEC-OPENSEARCH-READY http://127.0.0.1:PORT} goes to standard output; the node
 * then runs until standard input reaches end of file (the test harness closes it, or dies)
 * or the process gets SIGTERM.
 */
public final class OpenSearchTestNode {

    /** The line prefix the Python harness waits for. */
    public static final String READY_PREFIX = "INBEC-OPENSEARCH-READY ";

    private OpenSearchTestNode() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: OpenSearchTestNode BASE_DIR [HTTP_PORT]");
            System.exit(2);
        }
        final String baseDir = args[0];
        final String httpPort = args.length > 1 ? args[1] : "0";

        final OpenSearchRunner runner = new OpenSearchRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> closeQuietly(runner)));

        runner.onBuild((number, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", httpPort);
            settings.put("transport.port", "0");
            settings.put("discovery.type", "single-node");
            // The runner's own default is a cluster-manager list for several nodes.
            settings.remove("cluster.initial_cluster_manager_nodes");
            settings.put("action.auto_create_index", "true");
        }).build(OpenSearchRunner.newConfigs()
                .basePath(baseDir)
                .numOfNode(1)
                .clusterName("inbec-test")
                .printOnFailure());

        final ClusterHealthStatus status = runner.ensureYellow();
        final InetSocketAddress address = runner.getInstance(HttpServerTransport.class)
                .boundAddress().publishAddress().address();
        System.out.println(READY_PREFIX + "http://127.0.0.1:" + address.getPort()
                + " status=" + status);
        System.out.flush();

        waitForEndOfInput(System.in);
        closeQuietly(runner);
        System.exit(0);
    }

    /** Blocks until the harness closes our standard input. */
    private static void waitForEndOfInput(final InputStream input) {
        final byte[] buffer = new byte[256];
        try {
            while (input.read(buffer) >= 0) {
                // Anything written to us is ignored; only end of file matters.
            }
        } catch (final IOException e) {
            // A broken pipe means the harness is gone: shut down as on end of file.
        }
    }

    private static void closeQuietly(final OpenSearchRunner runner) {
        if (runner.isClosed()) {
            return;
        }
        try {
            runner.close();
        } catch (final IOException e) {
            System.err.println("closing the node failed: " + e);
        }
    }
}
