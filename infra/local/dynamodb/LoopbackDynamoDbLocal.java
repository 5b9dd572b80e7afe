// Starts Amazon's DynamoDB Local listening on 127.0.0.1 only.
//
// The jar has no option for the address it binds: its Jetty server listens on every interface,
// and DynamoDB Local accepts any credentials, so anyone who can reach the machine could write
// API keys or wallets. This launcher builds the server exactly as the jar's own main does
// (same command-line options), sets its connectors' host to the loopback address, then starts
// it. scripts/setup.sh compiles it against the pinned jar.
import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public final class LoopbackDynamoDbLocal {
    private LoopbackDynamoDbLocal() {}

    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        Connector[] connectors = server.getConnectors();
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local has no connector to bind");
        }
        for (Connector connector : connectors) {
            // Fail rather than listen on every interface if the jar ever changes its connector.
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.start();
        System.err.println("DynamoDB Local listening on 127.0.0.1 only");
    }
}
