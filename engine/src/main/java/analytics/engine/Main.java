package analytics.engine;
public final class Main { public static void main(String[] a) { System.out.println(analytics.engine.proto.AnalysisRequest.getDescriptor().getFullName()); } }
